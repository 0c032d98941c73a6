package daemon

// sdNotifyReady is replaced in a later commit.
func sdNotifyReady() (bool, error) { return false, nil }
