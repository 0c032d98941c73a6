// Package portmap talks to the gateway's port-mapping services: UPnP-IGD
// (SSDP discovery, then SOAP), NAT-PMP and PCP (pcp.go). Today it probes
// which of them work, for `punchd nat`; it is its own package because
// `punchd up` is to use the mapped ports as ICE candidates too.
package portmap
