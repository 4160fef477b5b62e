//go:build linux

package transport_test

import (
	"testing"

	"github.com/nanoseg/nanoseg/internal/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m, kubetest.Options{}) }
