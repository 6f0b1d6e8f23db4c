package platform

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func TestUnsupportedSourceSaysSo(t *testing.T) {
	var src snapshot.Source = unsupported{}
	if _, err := src.Take(context.Background(), snapshot.Options{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Take: %v", err)
	}
	if _, err := src.Pool(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Pool: %v", err)
	}
	if !strings.Contains(ErrUnsupported.Error(), "unsupported platform "+runtime.GOOS) {
		t.Errorf("message: %v", ErrUnsupported)
	}
}

func TestHostIsComplete(t *testing.T) {
	p := Host()
	if p.Name != runtime.GOOS || p.NewSource == nil || p.NewActor == nil || p.PTYName == nil {
		t.Fatalf("incomplete host platform: %+v", p)
	}
	if p.Paths.Policy == "" || p.Paths.Socket == "" || p.Paths.Lock == "" {
		t.Errorf("paths: %+v", p.Paths)
	}
	if p.NewSource(zap.NewNop()) == nil {
		t.Error("no source")
	}
	want := map[string]string{"linux": "pts/7", "darwin": "ttys007"}[runtime.GOOS]
	if got := p.PTYName(7); want != "" && got != want {
		t.Errorf("PTYName(7) = %q, want %q", got, want)
	}
}
