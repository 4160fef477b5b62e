package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nanoseg/nanoseg/model"
)

func TestDecodeEdgesForms(t *testing.T) {
	want := shopEdges()
	array, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var lines bytes.Buffer
	enc := json.NewEncoder(&lines)
	for _, e := range want {
		if err := enc.Encode(e); err != nil {
			t.Fatal(err)
		}
	}
	var windows bytes.Buffer
	enc = json.NewEncoder(&windows)
	for _, half := range [][]model.Edge{want[:5], want[5:]} {
		if err := enc.Encode(map[string]any{"start": t0, "end": t0, "edges": half}); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string][]byte{
		"array":        array,
		"json lines":   lines.Bytes(),
		"windows":      windows.Bytes(),
		"crlf + blank": []byte(strings.ReplaceAll(lines.String(), "\n", "\r\n\r\n")),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeEdges(data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if got, err := DecodeEdges([]byte(" \n")); err != nil || len(got) != 0 {
		t.Errorf("empty input: %v, %v", got, err)
	}
}

func TestDecodeEdgesErrors(t *testing.T) {
	ok := `{"source":{"namespace":"a","workload":"b"},"destination":{"external":true,"name":"x.example"},"protocol":"tcp","port":1,"flows":1}`
	tests := []struct {
		name, data, want string
		bad              bool
	}{
		{"syntax in line 3", ok + "\n" + ok + "\n" + `{"source": {` + "\n", "line 3:", false},
		{"truncated array", "[\n" + ok + ",\n" + ok + ",\n", "line 1: value starting here is not terminated", false},
		{"syntax error position", ok + "\n" + `{"source":` + "\n\n" + `}`, "line 4:", false},
		{"wrong type", ok + "\n" + `{"source":{"namespace":"a","workload":"b"},` + "\n" + `"port":"http"}`, "line 3:", false},
		{"not an edge", ok + "\n\n" + `{"src":"a","dst":"b"}`, "line 3:", true},
		{"external without name", `{"source":{"namespace":"a","workload":"b"},"destination":{"external":true},"protocol":"tcp"}`, "line 1:", true},
		{"no protocol", `{"source":{"namespace":"a","workload":"b"},"destination":{"namespace":"a","workload":"c"}}`, "line 1:", true},
		{"scalar", "42", "line 1:", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeEdges([]byte(tt.data))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q does not start with %q", err, tt.want)
			}
			if errors.Is(err, ErrBadEdge) != tt.bad {
				t.Errorf("errors.Is(%v, ErrBadEdge) = %v, want %v", err, !tt.bad, tt.bad)
			}
		})
	}
}
