package registry

// IsInsecure reports whether host (with or without port) was configured as insecure, so other
// libraries with their own transports (stereoscope, used by Syft) can apply the same setting.
func (c *Client) IsInsecure(host string) bool { return c.isInsecure(host) }
