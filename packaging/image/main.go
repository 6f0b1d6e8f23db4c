// Command image writes ptyreclaim's container image as an OCI image layout
// (a directory any registry tool can push: skopeo copy oci:DIR docker://...),
// without a Docker daemon, from static binaries built beforehand.
//
// The output is reproducible: the same binaries and flags give the same
// bytes and digests. Every time stamp is SOURCE_DATE_EPOCH (or 0), every
// file belongs to root, and entries are written in a fixed order.
//
//	go run ./packaging/image -out dist/image -version 1.2.3 \
//	    -binary linux/amd64=dist/amd64/ptyreclaim -binary linux/arm64=dist/arm64/ptyreclaim
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type binaries map[string]string // "linux/amd64" -> path

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(v string) error {
	plat, path, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(plat, "linux/") {
		return fmt.Errorf("-binary %q: want linux/ARCH=PATH", v)
	}
	b[plat] = path
	return nil
}

func main() {
	bins := binaries{}
	out := flag.String("out", "dist/image", "directory of the OCI image layout (replaced)")
	version := flag.String("version", "0.0.0-dev", "image version, for the labels and the ref.name annotation")
	flag.Var(bins, "binary", "linux/ARCH=PATH of a static ptyreclaim binary (repeat per architecture)")
	flag.Parse()
	if err := run(*out, *version, bins, epoch()); err != nil {
		fmt.Fprintln(os.Stderr, "image: "+err.Error())
		os.Exit(1)
	}
}

func epoch() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Unix(0, 0).UTC()
}

// platforms lists the architectures in a fixed order, whatever the flags'.
var platforms = []string{"linux/amd64", "linux/arm64"}

func run(out, version string, bins binaries, when time.Time) error {
	if len(bins) == 0 {
		return errors.New("no -binary given")
	}
	for plat := range bins {
		if !known(plat) {
			return fmt.Errorf("-binary %s: unsupported platform (want one of %v)", plat, platforms)
		}
	}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, plat := range platforms {
		path, ok := bins[plat]
		if !ok {
			continue
		}
		img, err := image(path, plat, version, when)
		if err != nil {
			return err
		}
		arch := strings.TrimPrefix(plat, "linux/")
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	// index.json names one multi-architecture index by the version, so
	// that oci:DIR:VERSION means the same image on every platform.
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": version}))
}

func known(plat string) bool {
	for _, p := range platforms {
		if p == plat {
			return true
		}
	}
	return false
}

// image is one architecture's image: the binary, the directories the
// DaemonSet mounts over, and a config that runs the daemon as root.
func image(binary, plat, version string, when time.Time) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	layerTar, err := rootfs(bin, when)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: when}, CreatedBy: "packaging/image: ptyreclaim " + version,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", strings.TrimPrefix(plat, "linux/")
	cf.Created = v1.Time{Time: when}
	cf.Config = v1.Config{
		// ptrace into other users' processes needs uid 0 with CAP_SYS_PTRACE.
		User:       "0:0",
		Entrypoint: []string{"/usr/bin/ptyreclaim"},
		Cmd:        []string{"daemon", "--policy=/etc/ptyreclaim/policy.yaml", "--metrics=0.0.0.0:9477", "--lock=/run/ptyreclaim/daemon.lock"},
		Env:        []string{"PATH=/usr/bin"},
		WorkingDir: "/",
		ExposedPorts: map[string]struct{}{
			"9477/tcp": {},
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "ptyreclaim",
			"org.opencontainers.image.description": "Releases leaked pseudo-terminals and stuck children inside running programs",
			"org.opencontainers.image.version":     version,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the image's one layer: /usr/bin/ptyreclaim, an empty
// /etc/ptyreclaim for the policy (root-owned, 0755, as the policy loader
// demands of every directory above the file), /run/ptyreclaim for the lock
// and /tmp. The container runtime provides /dev and /proc.
func rootfs(bin []byte, when time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: when, Format: tar.FormatPAX})
	}
	for _, d := range []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"etc/ptyreclaim/", 0o755}, {"run/", 0o755}, {"run/ptyreclaim/", 0o755}, {"tmp/", 0o1777}, {"usr/", 0o755}, {"usr/bin/", 0o755}} {
		if err := dir(d.name, d.mode); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/ptyreclaim", Mode: 0o755,
		Size: int64(len(bin)), ModTime: when, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
