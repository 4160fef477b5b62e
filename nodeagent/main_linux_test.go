//go:build linux

package nodeagent

import (
	"testing"

	"github.com/nanoseg/nanoseg/internal/kubetest"
)

func TestMain(m *testing.M) {
	kubetest.Main(m, kubetest.Options{CRDDirs: []string{"../manifests/crds"}})
}
