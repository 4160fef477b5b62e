package kube

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller"
)

// TestDecodeRefusesOversizedAndTrailingBodies: the page's promote and
// rollback bodies beyond 1 MiB are refused naming the limit (not as an
// "unexpected EOF" of a body cut at the limit), and a body with data after
// its JSON object is refused rather than acted on, as the agent's routes do.
func TestDecodeRefusesOversizedAndTrailingBodies(t *testing.T) {
	var req controller.PromoteRequest
	huge := `{"workload":"shop/db","to":"audit","reason":"` + strings.Repeat("a", 2<<20) + `"}`
	if err := decode(httptest.NewRequest("POST", "/v1/promote", strings.NewReader(huge)), &req); err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Errorf("a 2 MiB body: %v, want an error naming the 1 MiB limit", err)
	}
	trailing := `{"workload":"shop/db","to":"audit","reason":"x"} {"workload":"shop/web"}`
	if err := decode(httptest.NewRequest("POST", "/v1/promote", strings.NewReader(trailing)), &req); err == nil || !strings.Contains(err.Error(), "after the JSON object") {
		t.Errorf("two objects: %v, want an error", err)
	}
	if err := decode(httptest.NewRequest("POST", "/v1/promote", strings.NewReader(`{"workload":"shop/db","to":"audit","reason":"x"}`+"\n")), &req); err != nil || req.Workload != "shop/db" {
		t.Errorf("one object: %+v, %v", req, err)
	}
}
