package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	storekube "github.com/nanoseg/nanoseg/store/kube"
	"github.com/nanoseg/nanoseg/transport"
)

// RESTConfig returns the client configuration: the kubeconfig file at path,
// or the in-cluster one (the pod's ServiceAccount token,
// KUBERNETES_SERVICE_HOST/PORT) when path is "". Errors name the setting
// node.kubeconfig (RESTConfigFor).
func RESTConfig(path string) (*rest.Config, error) {
	return RESTConfigFor("node.kubeconfig", path)
}

// RESTConfigFor is RESTConfig for the setting key (its flag is
// --kubeconfig): an error says once which setting, which file and what
// is wrong with it, e.g. "node.kubeconfig (--kubeconfig) /etc/kc: no
// such file".
func RESTConfigFor(key, path string) (*rest.Config, error) {
	if path == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("%s (--kubeconfig): empty and not in a cluster (%w): set --kubeconfig", key, err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("%s (--kubeconfig) %s: %w", key, path, KubeconfigCause(path, err))
	}
	return c, nil
}

// KubeconfigCause is what is wrong with the kubeconfig file path, from
// err, client-go's error loading it, without the file's name again: "no
// such file" for a missing one, else client-go's reason without its
// "error loading config file" prefix.
func KubeconfigCause(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return errors.New("no such file")
	}
	if clientcmd.IsEmptyConfig(err) {
		return errors.New("no cluster, context or user in it")
	}
	msg := err.Error()
	for _, p := range []string{fmt.Sprintf("error loading config file %q: ", path), "stat " + path + ": ", "open " + path + ": "} {
		msg = strings.Replace(msg, p, "", 1)
	}
	return errors.New(msg)
}

// PodEvent returns Parts.Event over client: a Warning Event with reason
// NetnsNotFound on the unfound pod, reported by nodeName (core/v1 Events;
// RBAC: create events in the pod's namespace).
func PodEvent(client kubernetes.Interface, nodeName string) func(ctx context.Context, u UnfoundPod) error {
	return func(ctx context.Context, u UnfoundPod) error {
		return createPodEvent(ctx, client, nodeName, u.Pod, corev1.EventTypeWarning, "NetnsNotFound",
			fmt.Sprintf("nanoseg node %s cannot find the pod's network namespace (%s): %s; its network policies are not programmed until it is found",
				nodeName, u.Code, u.Reason))
	}
}

// PodFoundEvent returns Parts.Found over client: a Normal Event with
// reason NetnsFound on a pod that had a NetnsNotFound Event and whose
// network namespace is now found, reported by nodeName (RBAC as PodEvent).
func PodFoundEvent(client kubernetes.Interface, nodeName string) func(ctx context.Context, u UnfoundPod) error {
	return func(ctx context.Context, u UnfoundPod) error {
		return createPodEvent(ctx, client, nodeName, u.Pod, corev1.EventTypeNormal, "NetnsFound",
			fmt.Sprintf("nanoseg node %s found the pod's network namespace; its network policies are programmed", nodeName))
	}
}

// createPodEvent creates one Event on pod ("namespace/name").
func createPodEvent(ctx context.Context, client kubernetes.Interface, nodeName, pod, typ, reason, msg string) error {
	ns, name, _ := strings.Cut(pod, "/")
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: name + ".", Namespace: ns},
		InvolvedObject:      corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name},
		Reason:              reason,
		Message:             msg,
		Type:                typ,
		Source:              corev1.EventSource{Component: "nanoseg-node", Host: nodeName},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "nanoseg.io/node",
		ReportingInstance:   "nanoseg-node-" + nodeName,
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := client.CoreV1().Events(ns).Create(cctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create event on pod %s: %w", pod, err)
	}
	return nil
}

// Probe returns Parts.Probe over the clients: one list (limit 1) of each
// kind the agent watches, in every namespace, so that an unreachable API
// server, a missing right (RBAC) or a missing CRD is named in the error.
// ClusterNetworkPolicies are optional: NotFound for them (no CRD) is no
// error, the policy watcher runs without them.
func Probe(client kubernetes.Interface, dyn dynamic.Interface) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		one := metav1.ListOptions{Limit: 1}
		lists := []struct {
			what string
			list func() error
		}{
			{"pods", func() error { _, err := client.CoreV1().Pods("").List(ctx, one); return err }},
			{"namespaces", func() error { _, err := client.CoreV1().Namespaces().List(ctx, one); return err }},
			{"services", func() error { _, err := client.CoreV1().Services("").List(ctx, one); return err }},
			{"endpointslices", func() error { _, err := client.DiscoveryV1().EndpointSlices("").List(ctx, one); return err }},
			{"networkpolicies", func() error { _, err := client.NetworkingV1().NetworkPolicies("").List(ctx, one); return err }},
			{"nanosegments", func() error { _, err := dyn.Resource(storekube.NanoSegmentResource).List(ctx, one); return err }},
			{"clusternetworkpolicies", func() error {
				_, err := dyn.Resource(storekube.ClusterNetworkPolicyResource).List(ctx, one)
				if apierrors.IsNotFound(err) {
					return nil
				}
				return err
			}},
		}
		for _, l := range lists {
			if err := l.list(); err != nil {
				return fmt.Errorf("list %s: %w", l.what, err)
			}
		}
		return nil
	}
}

// Ping returns Parts.Ping over client: GET /readyz of the API server (the
// system:public-info-viewer ClusterRole lets every identity read it). It
// fails when the API server does not answer or is not ready to serve
// (its storage unreachable, shutting down).
func Ping(client kubernetes.Interface) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if _, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
			return fmt.Errorf("GET /readyz: %w", err)
		}
		return nil
	}
}

// ControllerCA returns Parts.ControllerCA for Config.ControllerCA:
// "configmap" reads ConfigMap nanoseg-controller-ca of nanoseg-system
// through client (RBAC: get on that ConfigMap), "configmap:<ns>/<name>"
// another ConfigMap, any other value a PEM file; "" gives nil (the
// system's roots).
func ControllerCA(client kubernetes.Interface, spec string) func(ctx context.Context) ([]byte, error) {
	switch {
	case spec == "":
		return nil
	case spec == "configmap":
		return transport.CAConfigMap(client, "nanoseg-system", transport.CAConfigMapName)
	case strings.HasPrefix(spec, "configmap:"):
		ns, name, _ := strings.Cut(strings.TrimPrefix(spec, "configmap:"), "/")
		return transport.CAConfigMap(client, ns, name)
	}
	return transport.CAFile(spec)
}

// EventsRefused reports whether err, from creating an Event, means the
// API server refuses this agent's Events (Forbidden: RBAC), rather than
// this one Event: creating in a terminating namespace is Forbidden too,
// with the cause NamespaceTerminating, and says nothing of the others.
func EventsRefused(err error) bool {
	return apierrors.IsForbidden(err) && !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
}
