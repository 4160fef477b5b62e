package lab

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Config holds the lab's settings.
type Config struct {
	// StateDir is where the lab keeps, per lab, its topology, address plan,
	// process ids and traffic counters: StateDir/<lab name>/.
	StateDir string `mapstructure:"stateDir" yaml:"stateDir"`
}

// DefaultConfig returns the lab settings used where nothing else is set.
func DefaultConfig() Config { return Config{StateDir: "/run/nanoseg/lab"} }

// Validate reports every invalid setting at once, each with its key.
func (c Config) Validate() error {
	var errs []error
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		errs = append(errs, fmt.Errorf("stateDir: %q must be an absolute path", c.StateDir))
	}
	return errors.Join(errs...)
}
