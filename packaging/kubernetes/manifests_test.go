package kubernetes

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/cli"
)

// objects decodes every document of a manifest strictly (unknown fields
// are errors) into the real API type of its kind.
func objects(t *testing.T, file string) (cms []corev1.ConfigMap, dss []appsv1.DaemonSet) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s document %d: %v", file, i, err)
		}
		switch meta.Kind {
		case "":
			continue // the leading comment
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict(doc, &cm); err != nil {
				t.Fatalf("%s document %d (ConfigMap): %v", file, i, err)
			}
			cms = append(cms, cm)
		case "DaemonSet":
			var ds appsv1.DaemonSet
			if err := yaml.UnmarshalStrict(doc, &ds); err != nil {
				t.Fatalf("%s document %d (DaemonSet): %v", file, i, err)
			}
			dss = append(dss, ds)
		default:
			t.Fatalf("%s document %d: unexpected kind %q", file, i, meta.Kind)
		}
	}
	return cms, dss
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  hostPid: true\n"), &ds); err == nil {
		t.Fatal("a misspelt field (hostPid) was accepted")
	}
}

// unitCapabilities reads CapabilityBoundingSet from the systemd unit, in
// Kubernetes' spelling (no CAP_ prefix).
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	unit, err := os.ReadFile("../systemd/ptyreclaim.service")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CapabilityBoundingSet=(.*)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("the unit sets no CapabilityBoundingSet")
	}
	var caps []string
	for _, c := range strings.Fields(string(m[1])) {
		caps = append(caps, strings.TrimPrefix(c, "CAP_"))
	}
	slices.Sort(caps)
	return caps
}

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func TestDaemonSetHasTheUnitsPrivilegesAndNoMore(t *testing.T) {
	cms, dss := objects(t, "daemonset.yaml")
	if len(cms) != 1 || len(dss) != 1 {
		t.Fatalf("want one ConfigMap and one DaemonSet, got %d and %d", len(cms), len(dss))
	}
	ds := dss[0]
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID must be true: the leaks are in the node's processes")
	}
	if spec.HostNetwork || spec.HostIPC {
		t.Error("hostNetwork and hostIPC are not needed")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the daemon talks to no API server: no service account token")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no security context with capabilities")
	}
	var add []string
	for _, a := range sc.Capabilities.Add {
		add = append(add, string(a))
	}
	slices.Sort(add)
	if want := unitCapabilities(t); !slices.Equal(add, want) {
		t.Errorf("capabilities %v, the unit has %v", add, want)
	}
	if len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	for what, ok := range map[string]bool{
		"readOnlyRootFilesystem: true":    sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
		"allowPrivilegeEscalation: false": sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		"privileged: false":               sc.Privileged == nil || !*sc.Privileged,
		"seccomp RuntimeDefault":          sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault,
	} {
		if !ok {
			t.Errorf("security context lacks %s", what)
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "daemon" {
		t.Fatalf("args %v do not run the daemon", c.Args)
	}

	// The policy file the daemon reads is the ConfigMap's, mounted as a
	// plain file (subPath), read-only, mode 0444.
	policyPath := flagValue(c.Args, "policy")
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == policyPath {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || mount.SubPath == "" || !mount.ReadOnly {
		t.Fatalf("--policy=%s is not a read-only subPath mount: %+v", policyPath, c.VolumeMounts)
	}
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == mount.Name {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil || vol.ConfigMap == nil || vol.ConfigMap.Name != cms[0].Name {
		t.Fatalf("volume %s is not the ConfigMap %s", mount.Name, cms[0].Name)
	}
	if vol.ConfigMap.DefaultMode == nil || *vol.ConfigMap.DefaultMode&0o022 != 0 {
		t.Errorf("the policy's mode must not be group or other writable: %v", vol.ConfigMap.DefaultMode)
	}
	text, ok := cms[0].Data[mount.SubPath]
	if !ok {
		t.Fatalf("the ConfigMap has no key %s", mount.SubPath)
	}
	// Laid out as the kubelet lays out a subPath file (a root-owned regular
	// file in root-owned directories), the real loader takes it unchanged.
	dir, err := os.MkdirTemp("/run", "ptyreclaim-k8s-") // root's, not world-writable like /tmp
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(text), 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(file); err != nil {
		t.Fatalf("the ConfigMap's policy: %v", err)
	}

	// The lock lives on the writable emptyDir: the root file system is read-only.
	lock := flagValue(c.Args, "lock")
	onVolume := false
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly && strings.HasPrefix(lock, m.MountPath+"/") {
			onVolume = true
		}
	}
	if !onVolume {
		t.Errorf("--lock=%s is not on a writable volume", lock)
	}
	// Metrics are where the port and the probes say.
	if flagValue(c.Args, "metrics") != "0.0.0.0:9477" || len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9477 {
		t.Errorf("metrics flag %q and ports %+v disagree", flagValue(c.Args, "metrics"), c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/metrics" || p.HTTPGet.Port.String() != c.Ports[0].Name {
			t.Errorf("%s probe %+v does not ask the metrics port", name, p)
		}
	}
}

// npdConfig is node-problem-detector's custom plugin monitor config, with
// the fields its types/config.go defines for what this file uses.
type npdConfig struct {
	Plugin       string `json:"plugin"`
	PluginConfig struct {
		InvokeInterval                 string `json:"invoke_interval"`
		Timeout                        string `json:"timeout"`
		MaxOutputLength                int    `json:"max_output_length"`
		Concurrency                    int    `json:"concurrency"`
		MessageChangeBasedConditionUpd bool   `json:"enable_message_change_based_condition_update"`
	} `json:"pluginConfig"`
	Source           string `json:"source"`
	MetricsReporting bool   `json:"metricsReporting"`
	Conditions       []struct {
		Type    string `json:"type"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"conditions"`
	Rules []struct {
		Type      string   `json:"type"`
		Condition string   `json:"condition"`
		Reason    string   `json:"reason"`
		Path      string   `json:"path"`
		Args      []string `json:"args"`
		Timeout   string   `json:"timeout"`
	} `json:"rules"`
}

func TestNodeProblemDetectorConfig(t *testing.T) {
	data, err := os.ReadFile("npd-ptyreclaim.json")
	if err != nil {
		t.Fatal(err)
	}
	var c npdConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	global, err := time.ParseDuration(c.PluginConfig.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	if c.Plugin != "custom" || c.PluginConfig.MaxOutputLength < cli.CheckMaxLine {
		t.Errorf("plugin %q, max_output_length %d (check prints up to %d)", c.Plugin, c.PluginConfig.MaxOutputLength, cli.CheckMaxLine)
	}
	for _, r := range c.Rules {
		d, err := time.ParseDuration(r.Timeout)
		if err != nil || d > global {
			t.Errorf("rule timeout %q must parse and not exceed the global %s (NPD refuses it)", r.Timeout, global)
		}
		if len(r.Args) == 0 || r.Args[0] != "check" {
			t.Errorf("rule runs %s %v, not ptyreclaim check", r.Path, r.Args)
		}
		// NPD refuses a permanent rule whose condition has no default.
		found := false
		for _, cond := range c.Conditions {
			found = found || cond.Type == r.Condition
		}
		if r.Type == "permanent" && !found {
			t.Errorf("permanent rule for %s has no default condition", r.Condition)
		}
	}
}

func TestAlertRulesWithPromtool(t *testing.T) {
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		if out, err := exec.Command("promtool", args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
