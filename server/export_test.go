package server

import (
	"time"

	"github.com/nanoseg/nanoseg/controller"
)

// SetNow makes s read the time from now (session expiry in tests).
func SetNow(s *Server, now func() time.Time) { s.now = now }

// Service returns the service s serves.
func Service(s *Server) *controller.Service { return s.svc }

// WarnPlaintext is warnPlaintext, for tests of addresses a test may not bind.
var WarnPlaintext = warnPlaintext
