package controller

import "time"

// ContainerStatus is what the agent's container inventory reports besides
// endpoints (GET /v1/containers): its runtimes and the running containers
// it does not enforce. Empty when the agent has no container runtimes
// (agent.containers) or when nanoseg runs against a cluster.
type ContainerStatus struct {
	// Runtimes are the agent's container runtimes as its last inventory
	// list found them.
	Runtimes []RuntimeStatus `json:"runtimes"`
	// NotEnforced are the running containers reported but never enforced:
	// on the host's network, or without a netns the runtime names.
	NotEnforced []NotEnforced `json:"notEnforced"`
	// LabelsNotUsed are enforced containers with a label or name their
	// identity did not use (not a valid namespace, workload or Kubernetes
	// label); Reason names it.
	LabelsNotUsed []NotEnforced `json:"labelsNotUsed"`
}

// RuntimeStatus is one container runtime of the agent.
type RuntimeStatus struct {
	// Name says which runtime and socket ("podman unix:///run/podman/podman.sock").
	Name string `json:"name"`
	// Reachable is true when the last inventory list reached it. An
	// unreachable runtime's containers keep their last known rules.
	Reachable bool `json:"reachable"`
	// Since is when it was first found reachable, or unreachable, as it is
	// now.
	Since time.Time `json:"since,omitzero"`
	// Error is why it cannot be reached ("" when reachable).
	Error string `json:"error,omitempty"`
	// Endpoints counts its endpoints (netns): when unreachable, the last
	// known ones, kept as they are.
	Endpoints int `json:"endpoints"`
}

// NotEnforced is a running container the agent reports but does not
// enforce (or, in LabelsNotUsed, enforces with a label it did not use).
type NotEnforced struct {
	// Runtime is the runtime's name (RuntimeStatus.Name).
	Runtime string `json:"runtime"`
	// Container is the container's name (its ID when it has none).
	Container string `json:"container"`
	// Reason says why and what follows.
	Reason string `json:"reason"`
}

// Containers returns the container inventory's report (Config.Containers);
// empty lists when there is none. It writes nothing.
func (s *Service) Containers() ContainerStatus {
	var st ContainerStatus
	if s.cfg.Containers != nil {
		st = s.cfg.Containers()
	}
	if st.Runtimes == nil {
		st.Runtimes = []RuntimeStatus{}
	}
	if st.NotEnforced == nil {
		st.NotEnforced = []NotEnforced{}
	}
	if st.LabelsNotUsed == nil {
		st.LabelsNotUsed = []NotEnforced{}
	}
	return st
}
