// Package kubetest starts a real Kubernetes API server for tests: Debian's
// etcd and a kube-apiserver built by hack/kube-bins.sh, both bound to
// 127.0.0.1 on free ports, with TLS, client-certificate and ServiceAccount
// token authentication, Node+RBAC authorization, and the project's CRDs
// applied and Established. No kubelet, scheduler or controller-manager runs:
// tests create and patch objects (pod status included) themselves.
//
// One cluster per test package: TestMain calls Main, tests call Shared.
//
//	func TestMain(m *testing.M) { kubetest.Main(m, kubetest.Options{CRDDirs: []string{"../manifests/crds"}}) }
//
//	func TestX(t *testing.T) {
//		c := kubetest.Shared(t) // skips, saying why, when the binaries are missing
//		ns := c.Namespace(t, map[string]string{"team": "a"})
//		...
//	}
//
// Where things live: the binaries in Bin() ($NANOSEG_KUBE_BIN, else the
// user's cache dir, as hack/kube-bins.sh writes them); etcd's data in a
// directory under /dev/shm (etcd 3.4 cannot skip fsync; tmpfs makes it
// cheap); certificates, kubeconfig and the two log files in Cluster.Dir.
// Stop removes both directories. A test binary killed before Stop leaves
// nothing running (its children get SIGKILL from the kernel when it dies,
// PR_SET_PDEATHSIG) and the next Start of any test process removes the
// directories and any survivor of clusters whose owner process is gone.
//
// The API server runs with --authorization-mode=Node,RBAC, the
// NodeRestriction admission plugin on and the ServiceAccount plugin off
// (Options.ServiceAccountAdmission says why), dual-stack Services in
// DefaultServiceCIDRs, and --endpoint-reconciler-type=none (it refuses a
// loopback advertise address, and no test needs the `kubernetes`
// Service's endpoints).
//
// Test-only: production code never imports this package. The flags:
// https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/;
// the README's "Kubernetes tests" says what a machine needs.
package kubetest
