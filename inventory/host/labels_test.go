package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadLabelsFileReportsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "labels.yaml")
	doc := `endpoints:
  - {netns: a/b, namespace: shop, workload: web}
  - {netns: db-0, namespace: shop}
  - {netns: web-0, namespace: shop, workload: web, addrs: [nope], ports: [{port: 0}]}
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := ReadLabelsFile(path)
	if err == nil {
		t.Fatal("a bad labels file was accepted")
	}
	for _, want := range []string{"endpoints[0].netns", "endpoints[1]: namespace and workload are required", "endpoints[2].addrs[0]", "endpoints[2].ports[0].port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	good := "namespaces: [{name: shop, labels: {team: t}}]\nendpoints:\n  - {netns: web-0, namespace: shop, workload: web, addrs: [198.18.0.1], ports: [{name: http, port: 80}]}\n"
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	eps, nss, err := ReadLabelsFile(path)
	if err != nil || len(eps) != 1 || eps[0].Ports[0].Protocol != "TCP" || nss["shop"]["kubernetes.io/metadata.name"] != "shop" {
		t.Errorf("good labels file: %+v %+v %v", eps, nss, err)
	}
}
