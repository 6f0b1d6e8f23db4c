package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// buildStatic builds the real ptyreclaim binary the way build.sh does.
func buildStatic(t *testing.T, arch string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ptyreclaim")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -buildid=", "-o", bin, "../../cmd/ptyreclaim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", arch, err, out)
	}
	return bin
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[strings.TrimPrefix(p, dir)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestImageIsReproducibleAndRuns(t *testing.T) {
	amd64, arm64 := buildStatic(t, "amd64"), buildStatic(t, "arm64")
	when := time.Unix(1700000000, 0).UTC()
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if err := run(a, "1.2.3", binaries{"linux/amd64": amd64, "linux/arm64": arm64}, when); err != nil {
		t.Fatal(err)
	}
	// The same inputs, with the flags in another order: the same bytes.
	if err := run(b, "1.2.3", binaries{"linux/arm64": arm64, "linux/amd64": amd64}, when); err != nil {
		t.Fatal(err)
	}
	ta, tb := readTree(t, a), readTree(t, b)
	if len(ta) != len(tb) {
		t.Fatalf("%d files against %d", len(ta), len(tb))
	}
	for name, data := range ta {
		if !bytes.Equal(data, tb[name]) {
			t.Fatalf("%s differs between two builds", name)
		}
	}

	p, err := layout.FromPath(a)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topMf, err := top.IndexManifest()
	if err != nil || len(topMf.Manifests) != 1 || topMf.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "1.2.3" {
		t.Fatalf("index.json: %+v, %v", topMf, err)
	}
	idx, err := top.ImageIndex(topMf.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var archs []string
	for _, d := range mf.Manifests {
		archs = append(archs, d.Platform.Architecture)
	}
	if !slices.Equal(archs, []string{"amd64", "arm64"}) {
		t.Fatalf("platforms %v", archs)
	}
	img, err := idx.Image(mf.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "amd64" || cf.Config.User != "0:0" || !slices.Equal(cf.Config.Entrypoint, []string{"/usr/bin/ptyreclaim"}) || !cf.Created.Time.Equal(when) {
		t.Fatalf("config: %+v", cf)
	}

	// Unpacked as a container runtime would, the image's own binary runs.
	root := t.TempDir()
	unpack(t, img, root, when)
	out, err := exec.Command("chroot", root, "/usr/bin/ptyreclaim", "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "linux/amd64") {
		t.Fatalf("chroot %s ptyreclaim version: %v\n%s", root, err, out)
	}

	// skopeo, a registry tool that knows nothing of ours, reads the layout.
	out, err = exec.Command("skopeo", "inspect", "--override-arch", "arm64", "oci:"+a+":1.2.3").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"Architecture": "arm64"`) {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
}

// unpack writes the image's layers into root, checking every entry is
// root's and dated when.
func unpack(t *testing.T, img v1.Image, root string, when time.Time) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(when) {
				t.Errorf("%s: uid %d gid %d time %s", h.Name, h.Uid, h.Gid, h.ModTime)
			}
			dst := filepath.Join(root, h.Name)
			switch h.Typeflag {
			case tar.TypeDir:
				if h.Mode&0o002 != 0 && h.Name != "tmp/" {
					t.Errorf("%s is world-writable", h.Name)
				}
				if err := os.MkdirAll(dst, os.FileMode(h.Mode)&os.ModePerm); err != nil {
					t.Fatal(err)
				}
			case tar.TypeReg:
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(dst, b, os.FileMode(h.Mode)&os.ModePerm); err != nil {
					t.Fatal(err)
				}
			default:
				t.Errorf("%s: unexpected entry type %c", h.Name, h.Typeflag)
			}
		}
		rc.Close()
	}
}

func TestImageRefusesUnknownPlatforms(t *testing.T) {
	if err := run(t.TempDir(), "1", binaries{"linux/s390x": "/bin/true"}, time.Unix(0, 0)); err == nil {
		t.Fatal("an unsupported platform was accepted")
	}
	if err := run(t.TempDir(), "1", binaries{}, time.Unix(0, 0)); err == nil {
		t.Fatal("no binary was accepted")
	}
}
