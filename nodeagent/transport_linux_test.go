//go:build linux

package nodeagent

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/transport"
)

type oneToken string

func (o oneToken) Authenticate(_ context.Context, tok string) (transport.Identity, error) {
	if tok != string(o) {
		return transport.Identity{}, transport.ErrUnauthenticated
	}
	return transport.Identity{User: transport.NodeAgentUser, Node: "node-a"}, nil
}

// TestSendsToController: with Config.Controller the agent sends what its
// sink holds, and its endpoint states, to the controller, and what the
// node flushed last at a stop still goes out.
func TestSendsToController(t *testing.T) {
	g := transport.NewGraph(1000, 1000)
	recv, err := transport.NewReceiver(transport.ReceiverConfig{}, oneToken("tok"), g, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(recv)
	defer srv.Close()
	dir := t.TempDir()
	caFile, tokFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "token")
	_ = os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	_ = os.WriteFile(tokFile, []byte("tok\n"), 0o600)

	inv, pol := &fakeInventory{}, &fakePolicies{}
	inv.synced.Store(true)
	pol.synced.Store(true)
	a, err := NewAgent(Config{NodeName: "node-a", Listen: "127.0.0.1:0", OwnerDir: t.TempDir(), Controller: srv.URL, ControllerCA: caFile,
		TokenFile: tokFile, SendInterval: 50 * time.Millisecond}, Parts{Inventory: inv, Policies: pol, ControllerCA: ControllerCA(nil, caFile)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e := model.Edge{Source: model.Peer{Namespace: "shop", Workload: "web"}, Destination: model.Peer{Namespace: "shop", Workload: "db"},
		Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{Flows: 1, LastSeen: time.Now()}}
	_ = a.Sink().MergeEdges([]model.Edge{e})
	waitFor(t, "the edge at the controller", 10*time.Second, func() bool {
		es, _ := g.Edges(time.Time{})
		return len(es) == 1 && len(g.Endpoints()) == 1 && g.Endpoints()[0].Node == "node-a"
	})
	// Added just before the stop: the sender's last attempt carries it.
	_ = a.Sink().MergeEdges([]model.Edge{e})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if es, _ := g.Edges(time.Time{}); len(es) != 1 || es[0].Flows != 2 {
		t.Errorf("after the stop the controller has %+v, want the edge with 2 flows", es)
	}
	if st := a.Sender().Stats(); st.Accepted == 0 || st.Failing {
		t.Errorf("sender stats %+v", st)
	}
}
