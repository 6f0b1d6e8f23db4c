package cli

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/daemon"
	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// startNodeExporter runs Debian's node_exporter with only its textfile
// collector, on a loopback port.
func startNodeExporter(t *testing.T, dir string) string {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command("prometheus-node-exporter", "--web.listen-address="+addr,
		"--collector.disable-defaults", "--collector.textfile", "--collector.textfile.directory="+dir)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("node_exporter: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("node_exporter log:\n%s", logs.String())
		}
	})
	waitFor(t, 10*time.Second, "node_exporter", func() bool { return scrapeOK(addr) != "" })
	return addr
}

// scrapeOK returns a scrape, or "" when node_exporter does not answer (yet).
func scrapeOK(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

func TestDaemonTextfileWithRealNodeExporter(t *testing.T) {
	bin := buildForNobody(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, pol, "version: 1\n") // report only
	leaker := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "7", "0")

	// A short interval: the file is replaced about every 50 ms while
	// node_exporter reads it.
	d := exec.Command(bin, "daemon", "--policy", pol, "--interval", "50ms", "--textfile", dir,
		"--lock", filepath.Join(t.TempDir(), "lock"))
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	dDone := make(chan struct{})
	go func() { _ = d.Wait(); close(dDone) }()
	t.Cleanup(func() { _ = d.Process.Kill(); <-dDone })

	addr := startNodeExporter(t, dir)
	series := regexp.MustCompile(`(?m)^ptyreclaim_holder_ptys\{comm="leak",pid="` + strconv.Itoa(leaker.PID) + `"\} 7$`)
	waitFor(t, 20*time.Second, "the leaker's series through node_exporter", func() bool {
		return series.MatchString(scrapeOK(addr))
	})
	// Every scrape while the daemon keeps rewriting the file sees one whole
	// file: node_exporter reports a parse error of a torn file as
	// node_textfile_scrape_error 1, and a half file would lose series.
	ok := regexp.MustCompile(`(?m)^node_textfile_scrape_error 0$`)
	for i := 0; i < 200; i++ {
		body := scrape(t, addr)
		if !ok.MatchString(body) || !strings.Contains(body, "ptyreclaim_pool_limit ") || !series.MatchString(body) {
			t.Fatalf("scrape %d is not one whole file:\n%s", i, body)
		}
	}
	// Only the .prom file is left: temporary files never stay behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != daemon.TextfileName && !strings.HasPrefix(e.Name(), daemon.TextfileName) {
			t.Errorf("unexpected file %s in the textfile directory", e.Name())
		}
	}
}

func TestPrometheusOutputPassesPromtool(t *testing.T) {
	testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "3", "0")
	out, errs, code := run(t, "status", "--prometheus")
	if code != 0 {
		t.Fatalf("status --prometheus: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, `ptyreclaim_holder_ptys{comm="leak"`) {
		t.Fatalf("no holder series:\n%s", out)
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, b)
	}
	if _, _, code := run(t, "status", "--prometheus", "--json"); code != ExitUsage {
		t.Fatalf("--prometheus with --json: exit %d, want %d", code, ExitUsage)
	}
}

func TestDaemonRefusesATextfileThatIsNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	writePolicy(t, f, "")
	_, errs, code := run(t, "daemon", "--textfile", f, "--lock", filepath.Join(t.TempDir(), "lock"))
	if code != ExitUsage || !strings.Contains(errs, "not a directory") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("exit %d: %q", code, errs)
	}
}
