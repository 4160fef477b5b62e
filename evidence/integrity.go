package evidence

// Integrity: manifest, signature, chain.
//
// Design: manifest.json lists every other file of the bundle with its
// SHA-256 and size; manifest.sig is the ed25519 signature (RFC 8032, pure
// Ed25519, no pre-hash) over the exact bytes of manifest.json, base64
// (standard encoding). Signing the manifest signs every file through its
// digest. Each manifest names the SHA-256 of the previous bundle's
// manifest.json and its sequence number, so bundles form a hash chain: a
// deleted or edited bundle breaks the link of the next one. The signing key
// stays with the agent's state (0600); the public key travels in the bundle
// and, for an auditor, as a separate file to pin with --public-key.
// Sources: RFC 8032 (Ed25519); crypto/ed25519; FIPS 180-4 (SHA-256).

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File names with a fixed meaning.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	PublicKeyFile = "signing-key.pub"
	// FormatV1 is Manifest.Format of this package's bundles.
	FormatV1 = "nanoseg-evidence/v1"
)

// Manifest lists every file of a bundle except itself and its signature.
type Manifest struct {
	Format    string    `json:"format"`
	CreatedAt time.Time `json:"createdAt"`
	// Sequence numbers the exports of one signing key: 1, 2, ...
	Sequence uint64 `json:"sequence"`
	// Previous links to the bundle exported before this one with the same
	// key; nil for the first.
	Previous *Link `json:"previous,omitempty"`
	// PublicKey is the signer's ed25519 public key (base64); KeyID the
	// first 16 hex digits of its SHA-256.
	PublicKey string      `json:"publicKey"`
	KeyID     string      `json:"keyID"`
	Files     []FileEntry `json:"files"`
	// Notes say what was left out and why (for example no PDF converter).
	Notes []string `json:"notes,omitempty"`
}

// Link is a reference to a previous bundle's manifest.
type Link struct {
	Sequence       uint64    `json:"sequence"`
	ManifestSHA256 string    `json:"manifestSHA256"` // hex
	CreatedAt      time.Time `json:"createdAt"`
}

// FileEntry is one file: slash-separated path relative to the bundle,
// SHA-256 (hex) and size in bytes.
type FileEntry struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// KeyID returns the first 16 hex digits of the SHA-256 of pub.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign adds manifest.json, manifest.sig and signing-key.pub to files
// (name → content), listing every other file in the manifest m (whose
// Files, PublicKey and KeyID it sets), and returns the SHA-256 (hex) of
// manifest.json, the value the next bundle links to. Errors: a file named
// like one of the three, a path that is not a clean relative path, or an
// encoding failure.
func Sign(files map[string][]byte, m Manifest, key ed25519.PrivateKey) (string, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok {
		return "", errors.New("sign manifest: not an ed25519 key")
	}
	for _, reserved := range []string{ManifestFile, SignatureFile} {
		if _, ok := files[reserved]; ok {
			return "", fmt.Errorf("sign manifest: %s is reserved", reserved)
		}
	}
	m.Format = FormatV1
	m.PublicKey = base64.StdEncoding.EncodeToString(pub)
	m.KeyID = KeyID(pub)
	files[PublicKeyFile] = []byte(m.PublicKey + "\n")
	m.Files = m.Files[:0]
	for name, data := range files {
		if err := checkPath(name); err != nil {
			return "", fmt.Errorf("sign manifest: %w", err)
		}
		sum := sha256.Sum256(data)
		m.Files = append(m.Files, FileEntry{Path: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))})
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode manifest: %w", err)
	}
	raw = append(raw, '\n')
	files[ManifestFile] = raw
	files[SignatureFile] = []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, raw)) + "\n")
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

func checkPath(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || filepath.ToSlash(filepath.Clean(name)) != name || strings.HasPrefix(name, "../") || name == ".." {
		return fmt.Errorf("file name %q is not a clean relative path", name)
	}
	return nil
}

// ErrVerify is wrapped by every verification failure.
var ErrVerify = errors.New("evidence does not verify")

// VerifyError names the first file of a bundle that does not match.
type VerifyError struct {
	File   string // slash-separated path in the bundle (or the previous bundle's)
	Reason string
}

func (e *VerifyError) Error() string { return fmt.Sprintf("%s: %s: %s", ErrVerify, e.File, e.Reason) }

// Unwrap makes errors.Is(err, ErrVerify) true.
func (e *VerifyError) Unwrap() error { return ErrVerify }

func verr(file, format string, a ...any) error {
	return &VerifyError{File: file, Reason: fmt.Sprintf(format, a...)}
}

// VerifyOptions are the optional checks of Verify.
type VerifyOptions struct {
	// TrustedKey, when set, must be the key that signed the bundle.
	TrustedKey ed25519.PublicKey
	// PreviousDir, when set, is the bundle exported just before: the
	// bundle must link to its manifest by hash and sequence, and be
	// signed by the same key.
	PreviousDir string
	// CheckHistory, when set, re-verifies the promotion history's hash
	// chain from history.json's bytes.
	CheckHistory func(raw []byte) error
}

// Result is what a successful Verify checked.
type Result struct {
	Manifest       Manifest
	ManifestSHA256 string
	Files          int  // files whose digest matched
	Trusted        bool // signed by VerifyOptions.TrustedKey
	Linked         bool // linked to VerifyOptions.PreviousDir
	HistoryChecked bool
}

// Verify checks the bundle in dir: the manifest's signature against the
// public key it carries (and against o.TrustedKey when set), every listed
// file's size and SHA-256, that no unlisted file is present, and the
// optional checks of o. It returns a *VerifyError (wrapping ErrVerify) that
// names the first file that does not match, in this order: manifest.json,
// manifest.sig, signing-key.pub, the listed files in manifest order,
// unlisted files in lexical order, history.json, the previous bundle's
// manifest.json.
func Verify(dir string, o VerifyOptions) (*Result, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, verr(ManifestFile, "cannot read: %v", err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, verr(ManifestFile, "not a manifest: %v", err)
	}
	if m.Format != FormatV1 {
		return nil, verr(ManifestFile, "format %q, want %q", m.Format, FormatV1)
	}
	pubRaw, err := base64.StdEncoding.DecodeString(m.PublicKey)
	if err != nil || len(pubRaw) != ed25519.PublicKeySize {
		return nil, verr(ManifestFile, "publicKey is not a base64 ed25519 public key")
	}
	pub := ed25519.PublicKey(pubRaw)
	sigRaw, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return nil, verr(SignatureFile, "cannot read: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(sigRaw), "\n"))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, verr(SignatureFile, "not a base64 ed25519 signature")
	}
	if !ed25519.Verify(pub, raw, sig) {
		return nil, verr(SignatureFile, "signature does not match manifest.json and the public key it names (key %s)", KeyID(pub))
	}
	res := &Result{Manifest: m}
	if o.TrustedKey != nil {
		if !bytes.Equal(o.TrustedKey, pub) {
			return nil, verr(SignatureFile, "signed by key %s, not by the trusted key %s", KeyID(pub), KeyID(o.TrustedKey))
		}
		res.Trusted = true
	}
	listed := map[string]bool{ManifestFile: true, SignatureFile: true}
	for _, f := range m.Files {
		if err := checkPath(f.Path); err != nil {
			return nil, verr(ManifestFile, "%v", err)
		}
		listed[f.Path] = true
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return nil, verr(f.Path, "listed in the manifest but cannot be read: %v", err)
		}
		sum := sha256.Sum256(data)
		if int64(len(data)) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
			return nil, verr(f.Path, "content differs from the manifest (size %d bytes, want %d; SHA-256 %s, want %s)",
				len(data), f.Size, hex.EncodeToString(sum[:]), f.SHA256)
		}
		res.Files++
	}
	if !listed[PublicKeyFile] {
		return nil, verr(PublicKeyFile, "not listed in the manifest")
	}
	if pk, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile)); strings.TrimSpace(string(pk)) != m.PublicKey {
		return nil, verr(PublicKeyFile, "differs from the manifest's publicKey")
	}
	var unlisted []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); !listed[rel] {
			unlisted = append(unlisted, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk bundle %s: %w", dir, err)
	}
	if len(unlisted) > 0 {
		sort.Strings(unlisted)
		return nil, verr(unlisted[0], "present but not listed in the manifest")
	}
	sum := sha256.Sum256(raw)
	res.ManifestSHA256 = hex.EncodeToString(sum[:])
	if o.CheckHistory != nil && listed["history.json"] {
		h, err := os.ReadFile(filepath.Join(dir, "history.json"))
		if err != nil {
			return nil, verr("history.json", "cannot read: %v", err)
		}
		if err := o.CheckHistory(h); err != nil {
			return nil, verr("history.json", "promotion history: %v", err)
		}
		res.HistoryChecked = true
	}
	if o.PreviousDir != "" {
		prev, err := Verify(o.PreviousDir, VerifyOptions{TrustedKey: o.TrustedKey})
		if err != nil {
			var ve *VerifyError
			if errors.As(err, &ve) {
				return nil, verr("previous bundle "+ve.File, "%s", ve.Reason)
			}
			return nil, err
		}
		switch {
		case m.Previous == nil:
			return nil, verr(ManifestFile, "has no link to a previous bundle, but one was given (sequence %d)", prev.Manifest.Sequence)
		case m.Previous.ManifestSHA256 != prev.ManifestSHA256:
			return nil, verr(ManifestFile, "links to previous manifest %s, but the given previous bundle's manifest is %s (gap or edit in the series)",
				m.Previous.ManifestSHA256, prev.ManifestSHA256)
		case m.Previous.Sequence != prev.Manifest.Sequence || m.Sequence != prev.Manifest.Sequence+1:
			return nil, verr(ManifestFile, "sequence %d does not follow the previous bundle's %d", m.Sequence, prev.Manifest.Sequence)
		case prev.Manifest.PublicKey != m.PublicKey:
			return nil, verr(SignatureFile, "signed by key %s, the previous bundle by %s", m.KeyID, prev.Manifest.KeyID)
		}
		res.Linked = true
	}
	return res, nil
}

// ReadPublicKey reads a base64 ed25519 public key file (as written in a
// bundle's signing-key.pub or next to the agent's key). Errors: unreadable
// file, or not a base64 32-byte key.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("read public key %s: not a base64 ed25519 public key", path)
	}
	return ed25519.PublicKey(b), nil
}

// LoadOrCreateKey reads the ed25519 private key at path (base64 of the
// 64-byte key), or, when the file does not exist, generates one, writes it
// with mode 0600 (its directory 0700) and the public key next to it as
// path+".pub" (0644). It refuses a key file readable by group or others.
// Errors: unreadable or malformed key, unsafe mode, write failures.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("stat signing key: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("signing key %s: mode %o lets others read it; chmod 600 it", path, st.Mode().Perm())
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || len(b) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("signing key %s: not a base64 ed25519 private key", path)
		}
		return ed25519.PrivateKey(b), nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := os.WriteFile(path+".pub", []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	return key, nil
}

// ChainHead is the last export of one signing key, kept next to it.
type ChainHead = Link

// ReadChainHead reads the chain head at path; a missing file is the empty
// chain (nil, nil). Errors: unreadable or malformed file.
func ReadChainHead(path string) (*ChainHead, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read chain head: %w", err)
	}
	var h ChainHead
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("read chain head %s: %w", path, err)
	}
	return &h, nil
}

// WriteChainHead replaces the chain head at path atomically (write to a
// temporary file, then rename), mode 0600.
func WriteChainHead(path string, h ChainHead) error {
	raw, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("encode chain head: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("write chain head: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write chain head: %w", err)
	}
	return nil
}
