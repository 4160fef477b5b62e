package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"

	"github.com/nanoseg/nanoseg/agent"
	ctrlkube "github.com/nanoseg/nanoseg/controller/kube"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/nodeagent"
)

// defaultConfigFile is read when it exists and no --config is given.
const defaultConfigFile = "/etc/nanoseg/config.yaml"

// Config is nanoseg's whole configuration. Each part is a plain struct of the
// package that uses it; viper fills it from, in increasing precedence, the
// defaults, the YAML config file, NANOSEG_* environment variables (a key's
// dots become underscores: lab.stateDir is NANOSEG_LAB_STATEDIR) and flags.
type Config struct {
	Log   LogConfig    `mapstructure:"log" yaml:"log"`
	Lab   lab.Config   `mapstructure:"lab" yaml:"lab"`
	Agent agent.Config `mapstructure:"agent" yaml:"agent"`
	// Node configures `nanoseg node`, the Kubernetes node agent.
	Node nodeagent.Config `mapstructure:"node" yaml:"node"`
	// Controller configures `nanoseg controller`, the cluster controller.
	Controller ctrlkube.Config `mapstructure:"controller" yaml:"controller"`
	// Server is where CLI commands reach the agent's API: a unix socket
	// path, or an https:// or http:// URL (with Token); empty means
	// agent.socket.
	Server string `mapstructure:"server" yaml:"server"`
	// Token is the bearer token sent to a TCP server.
	Token string `mapstructure:"token" yaml:"token"`
}

// LogConfig says how nanoseg logs.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level" yaml:"level"`
	// Format is text or json.
	Format string `mapstructure:"format" yaml:"format"`
}

// Defaults returns the configuration used where nothing else is set.
func Defaults() Config {
	return Config{
		Log:   LogConfig{Level: "info", Format: "text"},
		Lab:   lab.DefaultConfig(),
		Agent: agent.Defaults(),
	}
}

// Validate reports every invalid setting at once, each with its key.
func (c Config) Validate() error {
	var errs []error
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not one of text, json", c.Log.Format))
	}
	if err := c.Lab.Validate(); err != nil {
		errs = append(errs, prefixErr("lab.", err))
	}
	if err := c.Agent.Validate(); err != nil {
		errs = append(errs, prefixErr("agent.", err))
	}
	return errors.Join(errs...)
}

func prefixErr(prefix string, err error) error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		out = append(out, errors.New(prefix+line))
	}
	return errors.Join(out...)
}

// loadConfig builds the effective configuration from defaults, the config
// file (configPath, or defaultConfigFile if it exists), the environment and
// the flags of the running command.
func loadConfig(configPath string, flags *pflag.FlagSet, bind map[string]string) (Config, string, error) {
	v := viper.New()
	d := Defaults()
	flat, err := flatten(d)
	if err != nil {
		return Config{}, "", err
	}
	known := map[string]bool{}
	for k, val := range flat {
		v.SetDefault(k, val)
		known[envName(k)] = true
	}
	if err := checkEnv(known); err != nil {
		return Config{}, "", err
	}
	v.SetEnvPrefix("NANOSEG")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for key, flag := range bind {
		if f := flags.Lookup(flag); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return Config{}, "", fmt.Errorf("bind flag --%s: %w", flag, err)
			}
		}
	}
	used := ""
	if configPath == "" {
		if _, err := os.Stat(defaultConfigFile); err == nil {
			configPath = defaultConfigFile
		}
	}
	if configPath != "" {
		raw, err := os.ReadFile(configPath)
		if err != nil {
			return Config{}, "", fmt.Errorf("read config file: %w", err)
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(raw)); err != nil {
			return Config{}, "", fmt.Errorf("config file %s: %w", configPath, err)
		}
		used = configPath
	}
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		src := "configuration (defaults, NANOSEG_* environment, flags)"
		if configPath != "" {
			src = "config file " + configPath + " or NANOSEG_* environment"
		}
		return Config{}, "", fmt.Errorf("%s: %w", src, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, "", fmt.Errorf("invalid configuration:\n%w", err)
	}
	return c, used, nil
}

// envName returns the environment variable of configuration key k:
// "agent.flushInterval" is NANOSEG_AGENT_FLUSHINTERVAL.
func envName(k string) string {
	return "NANOSEG_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
}

// envExempt are NANOSEG_* variables that are not configuration keys.
var envExempt = map[string]bool{
	"NANOSEG_LAB_TEST_PAUSE_AFTER": true, // a test hook of the lab (lab/process_linux.go)
	// The Kubernetes test harness (internal/kubetest, hack/kube-bins.sh);
	// make test exports the first two to every test, this binary included.
	"NANOSEG_KUBE_BIN":      true,
	"NANOSEG_KUBE_REQUIRED": true,
	"NANOSEG_KUBE_CACHE":    true,
}

// checkEnv refuses NANOSEG_* variables that name no configuration key, so a
// misspelt variable does not go unnoticed.
func checkEnv(known map[string]bool) error {
	var bad []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "NANOSEG_") && !known[name] && !envExempt[name] {
			bad = append(bad, name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Errorf("environment: %s: no such setting (known: %s)", strings.Join(bad, ", "), strings.Join(names, ", "))
}

// flatten turns a config struct into dotted keys with their values, through
// its YAML form, so that viper knows every key (needed for environment
// variables) without a hand-kept list.
func flatten(c Config) (map[string]any, error) {
	raw, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal defaults: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("unmarshal defaults: %w", err)
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", m)
	return out, nil
}

// newLogger returns the logger that c asks for, writing to stderr.
func newLogger(c LogConfig) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
