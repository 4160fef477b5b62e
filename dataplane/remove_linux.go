//go:build linux

package dataplane

import "fmt"

// RemoveIfEqual deletes the table from the netns at nsPath when it holds
// exactly rs (State.Equal), in one transaction, and reports whether it
// did. A table holding anything else, and a netns without a table, are
// left as they are: the caller removes only what it put there itself
// (the node agent's fail-closed placeholder of a namespace that turned
// out not to be a pod's).
func (d *Dataplane) RemoveIfEqual(nsPath string, rs RuleSet) (bool, error) {
	f, err := openNetns(nsPath)
	if err != nil {
		return false, fmt.Errorf("remove %s: %w", nsPath, err)
	}
	defer f.Close()
	c, err := dial(int(f.Fd()))
	if err != nil {
		return false, fmt.Errorf("remove %s: %w", nsPath, err)
	}
	defer c.CloseLasting()
	cur, _, err := read(c)
	if err != nil {
		return false, fmt.Errorf("remove %s: %w", nsPath, err)
	}
	if !cur.Equal(rs) {
		return false, nil
	}
	c.DelTable(Table())
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("remove %s: commit transaction: %w", nsPath, err)
	}
	d.log.Debug("removed", "netns", nsPath, "ruleset", rs)
	return true, nil
}
