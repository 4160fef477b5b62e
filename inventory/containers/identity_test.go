package containers

import (
	"strings"
	"testing"
)

// Hostile label values never reach the endpoint's namespace or workload
// (a '/' in either broke the controller's "namespace/workload" keys and
// every rule id): each falls back to the next rule and is reported.
func TestIdentityRejectsHostileNames(t *testing.T) {
	long := strings.Repeat("a", 20000)
	id := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name       string
		labels     map[string]string
		pod, cname string
		wantNS     string
		wantWL     string
		wantNotes  []string // substrings, one per expected note
	}{
		{name: "slash", labels: map[string]string{LabelNamespace: "<b>x</b>", LabelWorkload: "a/b"}, cname: "web-1",
			wantNS: "default", wantWL: "web", wantNotes: []string{"namespace from label nanoseg.io/namespace", "workload from label nanoseg.io/workload"}},
		{name: "html falls to compose", labels: map[string]string{LabelNamespace: "<script>", LabelComposeProject: "shop", LabelWorkload: "<i>w</i>", LabelComposeService: "api"},
			wantNS: "shop", wantWL: "api", wantNotes: []string{"label nanoseg.io/namespace", "label nanoseg.io/workload"}},
		{name: "20000 chars", labels: map[string]string{LabelNamespace: long, LabelWorkload: long}, cname: "db",
			wantNS: "default", wantWL: "db", wantNotes: []string{"namespace from", "workload from"}},
		{name: "empty is absent", labels: map[string]string{LabelNamespace: "", LabelWorkload: ""}, cname: "db",
			wantNS: "default", wantWL: "db"},
		{name: "uppercase", labels: map[string]string{LabelNamespace: "Prod", LabelComposeService: "Web"}, pod: "Pod1", cname: "My_App",
			wantNS: "default", wantWL: id[:12], wantNotes: []string{"label nanoseg.io/namespace", "label com.docker.compose.service", "the pod name", "the container name"}},
		{name: "64-byte workload", labels: map[string]string{LabelWorkload: strings.Repeat("w", 64)}, cname: "ok",
			wantNS: "default", wantWL: "ok", wantNotes: []string{"more than 63"}},
		{name: "valid kept", labels: map[string]string{LabelNamespace: "payments", LabelWorkload: "api.v2"}, cname: "x",
			wantNS: "payments", wantWL: "api.v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, wl, lbl, rejected := identity(tc.labels, tc.pod, tc.cname, id)
			if ns != tc.wantNS || wl != tc.wantWL {
				t.Errorf("identity = %q/%q, want %q/%q", ns, wl, tc.wantNS, tc.wantWL)
			}
			if ValidNamespace(ns) != nil || ValidWorkload(wl) != nil || lbl[LabelApp] == "" {
				t.Errorf("identity gave an invalid name %q/%q (app %q)", ns, wl, lbl[LabelApp])
			}
			if len(rejected) < len(tc.wantNotes) {
				t.Fatalf("rejected = %q, want at least %d notes", rejected, len(tc.wantNotes))
			}
			for _, want := range tc.wantNotes {
				found := false
				for _, r := range rejected {
					found = found || strings.Contains(r, want)
					if len(r) > 1000 {
						t.Errorf("note of %d bytes: values are not clipped", len(r))
					}
				}
				if !found {
					t.Errorf("no note contains %q: %q", want, rejected)
				}
			}
			if len(tc.wantNotes) == 0 && len(rejected) > 0 {
				for _, r := range rejected {
					if strings.Contains(r, "namespace from") || strings.Contains(r, "workload from") {
						t.Errorf("unexpected note %q", r)
					}
				}
			}
		})
	}
}

// Labels that are not valid Kubernetes labels (policies select on them)
// are dropped and reported; the valid ones stay.
func TestIdentityDropsInvalidLabels(t *testing.T) {
	_, _, lbl, rejected := identity(map[string]string{
		"tier": "front", "team": "a/b", "bad key!": "v", "long": strings.Repeat("v", 64),
		"example.com/ok": "yes", "html": "<b>x</b>", "app": "<b>", "empty": "",
	}, "", "web", "abc")
	want := map[string]string{"tier": "front", "example.com/ok": "yes", "empty": "", "app": "web"}
	if len(lbl) != len(want) {
		t.Errorf("labels = %v, want %v", lbl, want)
	}
	for k, v := range want {
		if got, ok := lbl[k]; !ok || got != v {
			t.Errorf("label %s = %q (%v), want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"team", "bad key!", "long", "html", "app"} {
		found := false
		for _, r := range rejected {
			found = found || strings.Contains(r, k)
		}
		if !found {
			t.Errorf("dropped label %q not reported: %q", k, rejected)
		}
	}
}

// The Source reports an unused label in Notes, naming the container.
func TestSourceNotesRejectedLabels(t *testing.T) {
	ns := fakeNetns{"/run/netns/netns-x": {1, addr("198.18.216.30")}}
	rt := &fakeRuntime{name: "docker unix:///d.sock", cs: []Container{{Runtime: "docker", ID: strings.Repeat("c", 64), Name: "/evil-1",
		Running: true, NetnsPath: "/run/netns/netns-x", Labels: map[string]string{LabelNamespace: "<b>x</b>"}}}}
	s := newTestSource(ns, rt)
	snap, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Endpoints) != 1 || snap.Endpoints[0].Namespace != "default" || snap.Endpoints[0].Workload != "evil" {
		t.Fatalf("endpoints = %+v, want one default/evil", snap.Endpoints)
	}
	notes := s.Notes()
	if len(notes) != 2 || !notes[0].Enforced || !notes[1].Enforced || notes[1].Container != "evil-1" || !strings.Contains(notes[1].Reason, "namespace from label "+LabelNamespace) {
		t.Errorf("notes = %+v, want the dropped label and the unused namespace on evil-1", notes)
	}
}
