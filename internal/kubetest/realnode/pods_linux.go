//go:build linux

package realnode

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vishvananda/netns"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nettest"
)

// EchoPod returns a pod of the busybox image that echoes what each TCP
// connection to port sends (busybox nc -ll -e cat), bound to no node yet.
// It mounts no ServiceAccount token (a cluster without a
// controller-manager has no kube-root-ca.crt ConfigMap to project).
func EchoPod(namespace, name string, labels map[string]string, port int) *corev1.Pod {
	no := false
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "echo", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"nc", "-ll", "-p", fmt.Sprint(port), "-e", "cat"},
				Ports:   []corev1.ContainerPort{{ContainerPort: int32(port), Protocol: corev1.ProtocolTCP}},
			}},
		},
	}
}

// CreatePod creates pod bound to this node (spec.nodeName set, no
// scheduler needed).
func (n *Node) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	pod = pod.DeepCopy()
	pod.Spec.NodeName = n.Name
	if _, err := n.client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// RunPod creates pod on this node and waits until it is Running with an
// address; it returns the pod as the API server has it.
func (n *Node) RunPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	if err := n.CreatePod(ctx, pod); err != nil {
		return nil, err
	}
	return n.WaitRunning(ctx, pod.Namespace, pod.Name)
}

// WaitRunning waits until the pod is Running with status.podIP set.
func (n *Node) WaitRunning(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := n.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", nil
	})
	if err != nil {
		state := "not found"
		if pod != nil {
			state = fmt.Sprintf("phase %s, conditions %v", pod.Status.Phase, pod.Status.Conditions)
			for _, cs := range pod.Status.ContainerStatuses {
				if cs.State.Waiting != nil {
					state += fmt.Sprintf("; %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
				}
			}
		}
		return nil, fmt.Errorf("pod %s/%s not running (%s): %w\n--- kubelet log ---\n%s", namespace, name, state, err, kubetest.Tail(n.path("kubelet.log"), 15))
	}
	return pod, nil
}

// Netns returns the path of the network namespace (containerd's bind
// mount /run/netns/cni-<uuid>) that holds addr, found by asking each
// namespace for its addresses.
func (n *Node) Netns(addr netip.Addr) (string, error) {
	for name := range netnsNames() {
		out, err := output("ip", "-netns", name, "-o", "addr", "show")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Addr() == addr {
				return filepath.Join(netnsDir, name), nil
			}
		}
	}
	return "", fmt.Errorf("no pod netns under %s has %s", netnsDir, addr)
}

// Echo connects from the network namespace at nsPath to dst over TCP,
// sends a byte and waits for it back, all within timeout: nil means the
// path is open both ways. The connection is reset on close (no
// TIME_WAIT).
func Echo(nsPath string, dst netip.AddrPort, timeout time.Duration) error {
	h, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer h.Close()
	return nettest.DialTCPIn(h, dst, timeout)
}
