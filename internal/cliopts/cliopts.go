// Package cliopts fills a command's flags from environment variables and a
// YAML config file, with the precedence k3s users know:
// command-line flag > CLUSTER_* environment variable > config file > default.
package cliopts

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// EnvPrefix starts every environment variable that sets an option.
const EnvPrefix = "CLUSTER_"

// EnvName is the environment variable for a flag: "data-dir" → CLUSTER_DATA_DIR.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Source describes where the options come from, besides the command line.
type Source struct {
	// ConfigFile is the YAML file to read; "" reads none.
	ConfigFile string
	// ConfigRequired makes a missing ConfigFile an error (it was named
	// explicitly); otherwise a missing default file is ignored.
	ConfigRequired bool
	// Getenv looks up environment variables; nil means os.Getenv.
	Getenv func(string) string
	// Skip names flags that are never read from env or file (e.g. "config").
	Skip []string
	// EnvNames gives flags an environment variable other than EnvName's
	// (k3s's K3S_URL is --server's: CLUSTER_URL).
	EnvNames map[string]string
}

// Load applies Apply the way every command uses it: the config file is
// *configFile (the --config flag's variable), or CLUSTER_CONFIG_FILE when
// --config was not given; a file named either way must exist.
func Load(fs *pflag.FlagSet, configFile *string, getenv func(string) string, envNames map[string]string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	required := fs.Changed("config")
	if !required {
		if v := getenv(EnvPrefix + "CONFIG_FILE"); v != "" {
			*configFile, required = v, true
		}
	}
	return Apply(fs, Source{
		ConfigFile:     *configFile,
		ConfigRequired: required,
		Getenv:         getenv,
		Skip:           []string{"config"},
		EnvNames:       envNames,
	})
}

// Apply sets every flag of fs that was not given on the command line from
// the environment or, failing that, from the config file.
func Apply(fs *pflag.FlagSet, src Source) error {
	getenv := src.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	skip := map[string]bool{}
	for _, s := range src.Skip {
		skip[s] = true
	}
	fileValues, err := readConfigFile(src.ConfigFile, src.ConfigRequired)
	if err != nil {
		return err
	}
	// Reject unknown keys before anything is applied.
	var unknown []string
	for key := range fileValues {
		if f := fs.Lookup(key); f == nil || skip[key] {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config file %s: unknown key %q (keys are the long flag names, see --help)", src.ConfigFile, unknown[0])
	}

	// Decide from the state before we change anything: Set marks flags Changed.
	var pending []*pflag.Flag
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed && !skip[f.Name] {
			pending = append(pending, f)
		}
	})
	for _, f := range pending {
		env := EnvName(f.Name)
		if name, ok := src.EnvNames[f.Name]; ok {
			env = name
		}
		if v := getenv(env); v != "" {
			if err := setFromEnv(fs, f, v); err != nil {
				return fmt.Errorf("environment variable %s: %w", env, err)
			}
			continue
		}
		if v, ok := fileValues[f.Name]; ok {
			if err := setFromFile(fs, f, v); err != nil {
				return fmt.Errorf("config file %s: key %q: %w", src.ConfigFile, f.Name, err)
			}
		}
	}
	return nil
}

func readConfigFile(path string, required bool) (map[string]any, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !required {
			return nil, nil
		}
		return nil, fmt.Errorf("read config file: %w", err)
	}
	values := map[string]any{}
	if err := yaml.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("config file %s is not valid YAML: %v", path, trimYAMLError(err))
	}
	return values, nil
}

// trimYAMLError drops the "error converting YAML to JSON:" preamble.
func trimYAMLError(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "yaml: "); i >= 0 {
		return s[i:]
	}
	return s
}

// isList reports whether a flag takes repeated values.
func isList(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Slice") || strings.HasSuffix(t, "Array")
}

func setFromEnv(fs *pflag.FlagSet, f *pflag.Flag, v string) error {
	// Slice flags split a comma-separated value themselves; array flags
	// (used for pass-through args, whose values contain commas) take it whole.
	return fs.Set(f.Name, v)
}

func setFromFile(fs *pflag.FlagSet, f *pflag.Flag, v any) error {
	if list, ok := v.([]any); ok {
		if !isList(f) {
			return fmt.Errorf("takes a single value, not a list")
		}
		for _, item := range list {
			s, err := scalar(item)
			if err != nil {
				return err
			}
			if err := fs.Set(f.Name, s); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := scalar(v)
	if err != nil {
		return err
	}
	return fs.Set(f.Name, s)
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return fmt.Sprint(x), nil
	case float64:
		// YAML numbers arrive as float64; print integers without exponent.
		if x == float64(int64(x)) {
			return fmt.Sprint(int64(x)), nil
		}
		return fmt.Sprint(x), nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("unsupported value %v (want a string, number, boolean or list of them)", v)
	}
}
