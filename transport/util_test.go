package transport_test

import (
	"bytes"
	"encoding/pem"
	"slices"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

func writePEM(buf *bytes.Buffer, der []byte) {
	_ = pem.Encode(buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func sortEdges(es []model.Edge) {
	slices.SortFunc(es, func(a, b model.Edge) int { return bytes.Compare(store.EdgeKey(a), store.EdgeKey(b)) })
}
