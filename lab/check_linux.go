//go:build linux

package lab

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DeclaredTalk is one client-server pair the topology declares, from one
// replica.
type DeclaredTalk struct {
	From     Endpoint `json:"from"`
	To       string   `json:"to"`     // as written in the topology
	Target   string   `json:"target"` // FQDN the client resolves
	DstKey   string   `json:"dstKey"` // "namespace/workload" or the external's DNS name
	Port     int      `json:"port"`
	Protocol string   `json:"protocol"`
}

// DeclaredTalks returns every declared talk of every replica of p, in
// topology order.
func (p *Plan) DeclaredTalks() ([]DeclaredTalk, error) {
	var out []DeclaredTalk
	for _, e := range p.Endpoints {
		if e.External {
			continue
		}
		for _, w := range p.Topology.Workloads {
			if w.Namespace != e.Namespace || w.Name != e.Workload {
				continue
			}
			for _, tk := range w.Talks {
				tt, err := p.resolveTalk(w.Namespace, tk)
				if err != nil {
					return nil, fmt.Errorf("%s: talk to %s: %w", e.ID(), tk.To, err)
				}
				dst := tt.name
				for _, d := range p.Endpoints {
					if !d.External && d.FQDN() == tt.name {
						dst = d.Key()
						break
					}
				}
				out = append(out, DeclaredTalk{From: e, To: tk.To, Target: tt.name, DstKey: dst, Port: tt.port, Protocol: tt.protocol})
			}
		}
	}
	return out, nil
}

// TalkProbe is the outcome of one probe of a declared talk.
type TalkProbe struct {
	DeclaredTalk
	Family int    `json:"family"` // 4 or 6
	Err    string `json:"error,omitempty"`
}

// ProbeTalks connects once for every declared talk of p, from every
// replica, over each of families (4, 6), at most 8 at a time, each bounded
// by timeout, and returns the outcomes in declaration order.
func ProbeTalks(ctx context.Context, p *Plan, families []int, timeout time.Duration) ([]TalkProbe, error) {
	talks, err := p.DeclaredTalks()
	if err != nil {
		return nil, err
	}
	var out []TalkProbe
	for _, t := range talks {
		for _, f := range families {
			out = append(out, TalkProbe{DeclaredTalk: t, Family: f})
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pr := &out[i]
			c, err := NewClient(p, pr.From)
			if err == nil {
				_, err = c.Talk(ctx, pr.Target, pr.Port, pr.Protocol, pr.Family, 0, timeout)
				c.Close()
			}
			if err != nil {
				pr.Err = err.Error()
			}
		}()
	}
	wg.Wait()
	return out, nil
}
