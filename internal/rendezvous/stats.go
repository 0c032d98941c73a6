package rendezvous

// DroppedFrames counts frames dropped since start because the recipient's
// queue was full (for metrics).
func (s *Server) DroppedFrames() uint64 { return s.dropped.Load() }
