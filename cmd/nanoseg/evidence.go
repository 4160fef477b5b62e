package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
)

func newEvidenceCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Export and verify signed segmentation evidence for auditors",
	}
	cmd.AddCommand(newEvidenceExportCmd(a), newEvidenceVerifyCmd())
	return cmd
}

func newEvidenceExportCmd(a *app) *cobra.Command {
	var req controller.ExportRequest
	var out string
	var tarball, replace bool
	cmd := &cobra.Command{
		Use:   "export --out DIR [--window 1h] [--scope NAMESPACE|WORKLOAD] [--tar]",
		Short: "Export a signed evidence bundle: inventory, policies, rules, drift, counters, denied flows, reachability, probes",
		Long: `Ask the agent for a segmentation evidence bundle and write it into DIR (and,
with --tar, DIR.tar.gz). The agent assembles the bundle, runs the live probes
(unless --no-probes), signs the manifest with its ed25519 key (kept with its
state; created on first use) and links the bundle to its previous export.
DIR holds report.html (and report.pdf when a converter is installed), JSON and
CSV files with the same facts, manifest.json and manifest.sig. Check it with
` + "`nanoseg evidence verify DIR`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("evidence export: --out DIR is required")
			}
			if _, err := os.Stat(filepath.Join(out, evidence.ManifestFile)); err == nil {
				if !replace {
					return fmt.Errorf("evidence export: %s already holds a bundle; use --replace or another directory", out)
				}
				if err := os.RemoveAll(out); err != nil {
					return fmt.Errorf("evidence export: remove old bundle: %w", err)
				}
			}
			archive, hdr, err := newClient(a).PostRaw(cmd.Context(), "/v1/evidence/export", req)
			if err != nil {
				return fmt.Errorf("evidence export: %w", err)
			}
			files, err := evidence.UntarGz(bytes.NewReader(archive))
			if err != nil {
				return fmt.Errorf("evidence export: %w", err)
			}
			if err := evidence.WriteDir(out, files); err != nil {
				return fmt.Errorf("evidence export: %w", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "evidence bundle %s: %d files in %s (sequence %s, manifest SHA-256 %s)\n",
				hdr.Get(client.HeaderBundleName), len(files), out, hdr.Get(client.HeaderSequence), hdr.Get(client.HeaderManifestSHA256))
			if tarball {
				p := strings.TrimSuffix(filepath.Clean(out), "/") + ".tar.gz"
				if err := os.WriteFile(p, archive, 0o644); err != nil {
					return fmt.Errorf("evidence export: write archive: %w", err)
				}
				fmt.Fprintf(w, "archive: %s (%d bytes)\n", p, len(archive))
			}
			printBundleSummary(w, files["bundle.json"])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory to write the bundle into")
	f.StringVar(&req.Window, "window", "1h", "reporting window for counters and denied flows")
	f.StringVar(&req.Scope, "scope", "", "only this namespace (shop) or workload (shop/api); default everything")
	f.BoolVar(&tarball, "tar", false, "also write DIR.tar.gz")
	f.BoolVar(&replace, "replace", false, "replace a bundle already in DIR")
	f.BoolVar(&req.NoProbes, "no-probes", false, "skip the live probe run")
	f.BoolVar(&req.NoPDF, "no-pdf", false, "skip the PDF rendering of the report")
	f.IntVar(&req.Probe.MaxProbes, "max-probes", 0, "at most this many probes (default 512)")
	return cmd
}

// printBundleSummary prints the headline facts of bundle.json.
func printBundleSummary(w io.Writer, raw []byte) {
	var b evidence.Bundle
	if json.Unmarshal(raw, &b) != nil {
		return
	}
	inSync := 0
	for _, r := range b.Rules {
		if r.InSync {
			inSync++
		}
	}
	fmt.Fprintf(w, "window %s to %s: %d workloads; %d of %d endpoints in sync with their desired rules; %d rules, %d without hits; %d denied or audit-denied events\n",
		b.Meta.WindowStart.Format(evidence.TimeFormat), b.Meta.GeneratedAt.Format(evidence.TimeFormat), len(b.Inventory), inSync, len(b.Rules),
		len(b.Counters.Rules), len(b.Counters.Unused), len(b.Denied.Events))
	fmt.Fprintf(w, "reachability: %d paths before enforcement, %d now (%.1f %% fewer)\n", b.Reachability.PathsBefore, b.Reachability.PathsNow, b.Reachability.ReductionPercent)
	for _, r := range b.Rules {
		for _, d := range r.Drift {
			fmt.Fprintf(w, "drift: %s: %s\n", r.Netns, d)
		}
	}
	if b.Probes != nil {
		fmt.Fprintf(w, "probes: %d, %d mismatches\n", b.Probes.Probed, b.Probes.Mismatches)
	}
	if !b.Policies.Chain.Verified {
		fmt.Fprintf(w, "promotion history chain BROKEN: %s\n", b.Policies.Chain.Error)
	}
}

// verifyFailed makes `evidence verify` exit 1.
type verifyFailed struct{ error }

func (verifyFailed) ExitCode() int { return 1 }

func newEvidenceVerifyCmd() *cobra.Command {
	var previous, pubKey string
	cmd := &cobra.Command{
		Use:   "verify DIR|FILE.tar.gz [--previous DIR] [--public-key FILE]",
		Short: "Check a bundle's file digests, signature, chain link and promotion history",
		Long: `Check an evidence bundle offline: every file's SHA-256 and size against the
manifest, no unlisted file, the ed25519 signature over the manifest (against the
key in the bundle and, with --public-key, against a key you trust), the
promotion history's hash chain, and with --previous the link to the bundle
exported just before. It names the first file that does not match and exits 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := evidence.VerifyOptions{CheckHistory: func(raw []byte) error {
				var ps []model.Promotion
				if err := json.Unmarshal(raw, &ps); err != nil {
					return fmt.Errorf("decode: %w", err)
				}
				return model.VerifyPromotions(ps)
			}}
			if pubKey != "" {
				k, err := evidence.ReadPublicKey(pubKey)
				if err != nil {
					return fmt.Errorf("evidence verify: %w", err)
				}
				o.TrustedKey = k
			}
			dir, cleanup, err := bundleDir(args[0])
			if err != nil {
				return fmt.Errorf("evidence verify: %w", err)
			}
			defer cleanup()
			if previous != "" {
				pd, pclean, err := bundleDir(previous)
				if err != nil {
					return fmt.Errorf("evidence verify: previous: %w", err)
				}
				defer pclean()
				o.PreviousDir = pd
			}
			res, err := evidence.Verify(dir, o)
			if err != nil {
				return verifyFailed{fmt.Errorf("evidence verify %s: %w", args[0], err)}
			}
			w := cmd.OutOrStdout()
			m := res.Manifest
			fmt.Fprintf(w, "OK: %s: %d files match the manifest; signature valid (key %s", args[0], res.Files, m.KeyID)
			if res.Trusted {
				fmt.Fprint(w, ", the trusted key")
			} else {
				fmt.Fprint(w, ", not pinned: pass --public-key to check it is the agent's")
			}
			fmt.Fprintf(w, "); sequence %d", m.Sequence)
			if res.Linked {
				fmt.Fprintf(w, ", linked to the previous bundle (sequence %d)", m.Previous.Sequence)
			} else if m.Previous != nil {
				fmt.Fprintf(w, ", previous manifest %s not checked (pass --previous)", m.Previous.ManifestSHA256)
			}
			if res.HistoryChecked {
				fmt.Fprint(w, "; promotion history hash chain verified")
			}
			fmt.Fprintln(w)
			for _, n := range m.Notes {
				fmt.Fprintf(w, "note: %s\n", n)
			}
			if raw, err := os.ReadFile(filepath.Join(dir, "bundle.json")); err == nil {
				printBundleSummary(w, raw)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&previous, "previous", "", "the bundle exported just before (directory or .tar.gz)")
	cmd.Flags().StringVar(&pubKey, "public-key", "", "trusted public key file (base64 ed25519; the agent keeps it as evidence/signing.key.pub)")
	return cmd
}

// bundleDir returns a directory holding the bundle at path: path itself,
// or a temporary extraction of a .tar.gz (removed by cleanup).
func bundleDir(path string) (string, func(), error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", func() {}, err
	}
	if st.IsDir() {
		return path, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", func() {}, err
	}
	defer f.Close()
	files, err := evidence.UntarGz(f)
	if err != nil {
		return "", func() {}, err
	}
	tmp, err := os.MkdirTemp("", "nanoseg-evidence-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	dir := filepath.Join(tmp, "bundle")
	if err := evidence.WriteDir(dir, files); err != nil {
		cleanup()
		return "", func() {}, err
	}
	return dir, cleanup, nil
}
