package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Keys accepted in each part of the file, in the order the design lists them.
var (
	topKeys      = []string{"version", "defaults", "pressure", "holders", "self_service", "inspector_with_other_users", "allow", "deny"}
	defaultsKeys = []string{"min_idle", "method", "watched", "watched_method", "max_per_run"}
	pressureKeys = []string{"warn", "critical", "min_idle"}
	holdersKeys  = []string{"warn_at", "reclaim_at"}
	allowKeys    = []string{"name", "exe", "user", "ptys", "orphans", "disposable", "watched_method", "runtime"}
	denyKeys     = []string{"name", "exe", "user"}
)

// Parse decodes and validates a policy file's contents. name is used in
// error messages (usually the file path). Keys the file leaves out take the
// values of Default, except the rule lists, which start empty.
//
// Parse does not check file ownership or permissions; Load does.
func Parse(data []byte, name string) (*Policy, error) {
	d := &decoder{file: name, lines: map[string]int{}}
	p, err := d.decode(data)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

type decoder struct {
	file  string
	lines map[string]int
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) decode(data []byte) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, d.errorf(nil, "file is empty; a policy needs at least \"version: 1\"")
		}
		return nil, d.yamlError(err, data)
	}
	// A second document would be silently ignored; refuse it instead.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, d.errorf(&extra, "only one YAML document is allowed (remove the second \"---\")")
	} else if !errors.Is(err, io.EOF) {
		return nil, d.yamlError(err, data)
	}
	if err := d.rejectAliases(&doc); err != nil {
		return nil, err
	}

	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, d.errorf(root, "file is empty; a policy needs at least \"version: 1\"")
	}
	// Check the version first: keys of a newer format should be reported as
	// a version problem, not as unknown keys.
	if root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if k := root.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "version" {
				if err := d.checkVersion(root.Content[i+1]); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	fields, err := d.fields(root, "at top level", topKeys, nil)
	if err != nil {
		return nil, err
	}
	vf, ok := fields.get("version")
	if !ok {
		return nil, d.errorf(root, "missing key \"version\" (add \"version: 1\" at the top)")
	}

	// checkVersion above accepted the value.
	p := Default()
	p.Deny = nil
	p.Source = d.file
	p.lines = d.lines
	d.lines["version"] = vf.key.Line

	for _, f := range fields.ordered {
		var err error
		switch f.name {
		case "version":
			// Done above.
		case "defaults":
			err = d.defaults(f.val, &p.Defaults)
		case "pressure":
			err = d.pressure(f.val, &p.Pressure)
		case "holders":
			err = d.holders(f.val, &p.Holders)
		case "self_service":
			d.lines["self_service"] = f.val.Line
			p.SelfService, err = d.bool(f.val, "self_service")
		case "inspector_with_other_users":
			d.lines["inspector_with_other_users"] = f.val.Line
			p.InspectorWithOtherUsers, err = d.string(f.val, "inspector_with_other_users")
		case "allow":
			p.Allow, err = d.rules(f.val, "allow")
		case "deny":
			p.Deny, err = d.rules(f.val, "deny")
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (d *decoder) checkVersion(n *yaml.Node) error {
	version, err := d.int(n, "version")
	if err != nil {
		return err
	}
	if version != SupportedVersion {
		return d.errorf(n, "unsupported version %d (this ptyreclaim understands version %d)", version, SupportedVersion)
	}
	return nil
}

// yamlLine matches the position prefix of yaml.v3 syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner). yaml.v3 prints their 0-based line, and the scanner's 1-based
// one; both print no line for the first line. TestYAMLErrorLines pins this.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// yamlError turns a yaml.v3 syntax error into our one-line "file:line: msg"
// with a 1-based line.
func (d *decoder) yamlError(err error, data []byte) error {
	msg := strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", " "), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch("yaml: " + msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserProblems[msg] {
			line++
		}
	} else if l := badCharLine(data); l > 0 {
		// Reader errors (bad UTF-8, control characters) carry no line.
		line = l
	} else if parserProblems[msg] || scannerProblem(msg) {
		line = 1
	}
	return &Error{File: d.file, Line: line, Msg: "invalid YAML: " + msg}
}

// scannerProblem reports whether msg looks like a yaml.v3 scanner error,
// which has a position even when yaml.v3 prints none.
func scannerProblem(msg string) bool {
	for _, prefix := range []string{"found ", "did not find ", "could not find ", "mapping ", "block sequence "} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// badCharLine returns the 1-based line of the first character YAML does not
// accept (invalid UTF-8 or a control character), or 0 if there is none.
func badCharLine(data []byte) int {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		bad := (r == utf8.RuneError && size == 1) ||
			(r < 0x20 && r != '\t' && r != '\n' && r != '\r') ||
			(r >= 0x7f && r < 0xa0 && r != 0x85) ||
			r == 0xfffe || r == 0xffff
		if bad {
			return line
		}
		if r == '\n' {
			line++
		}
		i += size
	}
	return 0
}

// rejectAliases refuses YAML aliases anywhere. They are never needed in a
// policy, and refusing them keeps every value's line number meaningful and
// rules out alias expansion bombs.
func (d *decoder) rejectAliases(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		return d.errorf(n, "YAML aliases (*%s) are not supported in a policy; write the value out", printable(n.Value))
	}
	for _, c := range n.Content {
		if err := d.rejectAliases(c); err != nil {
			return err
		}
	}
	return nil
}

type field struct {
	name string
	key  *yaml.Node
	val  *yaml.Node
}

// fieldSet is a decoded mapping: its fields in file order and by name.
type fieldSet struct {
	ordered []field
	byName  map[string]field
}

func (fs fieldSet) get(name string) (field, bool) {
	f, ok := fs.byName[name]
	return f, ok
}

// fields reads a mapping, refusing non-string keys, duplicate keys and keys
// not in known. where says which part of the file this is, for messages.
// denied lists keys that exist elsewhere but are not allowed here, so that
// the message can say so instead of calling them unknown.
func (d *decoder) fields(n *yaml.Node, where string, known, denied []string) (fieldSet, error) {
	if n.Kind != yaml.MappingNode {
		return fieldSet{}, d.errorf(n, "expected keys %s (key: value lines), got %s", where, describe(n))
	}
	fs := fieldSet{byName: map[string]field{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		// A merge key "<<" has its own tag; let it through to be reported
		// as an unknown key, which is what it is here.
		if k.Kind != yaml.ScalarNode || (k.ShortTag() != "!!str" && k.ShortTag() != "!!merge") {
			return fieldSet{}, d.errorf(k, "keys %s must be plain names, got %s", where, describe(k))
		}
		if prev, dup := fs.byName[k.Value]; dup {
			return fieldSet{}, d.errorf(k, "duplicate key %q %s (first at line %d)", k.Value, where, prev.key.Line)
		}
		if !slices.Contains(known, k.Value) {
			if slices.Contains(denied, k.Value) {
				return fieldSet{}, d.errorf(k, "key %q is not allowed %s (deny rules match by name, exe and user only)", k.Value, where)
			}
			msg := fmt.Sprintf("unknown key %q %s", k.Value, where)
			if s := suggest(k.Value, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return fieldSet{}, &Error{File: d.file, Line: k.Line, Msg: msg}
		}
		f := field{name: k.Value, key: k, val: v}
		fs.byName[k.Value] = f
		fs.ordered = append(fs.ordered, f)
	}
	return fs, nil
}

func (d *decoder) defaults(n *yaml.Node, out *Defaults) error {
	if isNull(n) {
		return nil
	}
	fs, err := d.fields(n, "in defaults", defaultsKeys, nil)
	if err != nil {
		return err
	}
	for _, f := range fs.ordered {
		key := "defaults." + f.name
		d.lines[key] = f.val.Line
		switch f.name {
		case "min_idle":
			out.MinIdle, err = d.duration(f.val, key)
		case "method":
			out.Method, err = d.method(f.val, key)
		case "watched":
			out.Watched, err = d.string(f.val, key)
		case "watched_method":
			out.WatchedMethod, err = d.method(f.val, key)
		case "max_per_run":
			out.MaxPerRun, err = d.int(f.val, key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) pressure(n *yaml.Node, out *Pressure) error {
	if isNull(n) {
		return nil
	}
	fs, err := d.fields(n, "in pressure", pressureKeys, nil)
	if err != nil {
		return err
	}
	for _, f := range fs.ordered {
		key := "pressure." + f.name
		d.lines[key] = f.val.Line
		switch f.name {
		case "warn":
			out.Warn, err = d.percent(f.val, key)
		case "critical":
			out.Critical, err = d.percent(f.val, key)
		case "min_idle":
			out.MinIdle, err = d.duration(f.val, key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) holders(n *yaml.Node, out *Holders) error {
	if isNull(n) {
		return nil
	}
	fs, err := d.fields(n, "in holders", holdersKeys, nil)
	if err != nil {
		return err
	}
	for _, f := range fs.ordered {
		key := "holders." + f.name
		d.lines[key] = f.val.Line
		switch f.name {
		case "warn_at":
			out.WarnAt, err = d.int(f.val, key)
		case "reclaim_at":
			out.ReclaimAt, err = d.int(f.val, key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// rules decodes the allow or deny list. kind is "allow" or "deny".
func (d *decoder) rules(n *yaml.Node, kind string) ([]Rule, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, d.errorf(n, "%s must be a list of rules (each starting with \"- \"), got %s", kind, describe(n))
	}
	known, denied := allowKeys, []string(nil)
	if kind == "deny" {
		known, denied = denyKeys, allowKeys
	}
	where := "in " + kind + " rule"
	rules := make([]Rule, 0, len(n.Content))
	for i, rn := range n.Content {
		prefix := fmt.Sprintf("%s[%d]", kind, i)
		d.lines[prefix] = rn.Line
		if rn.Kind != yaml.MappingNode {
			return nil, d.errorf(rn, "%s must be a mapping such as \"- name: node\", got %s", prefix, describe(rn))
		}
		fs, err := d.fields(rn, where, known, denied)
		if err != nil {
			return nil, err
		}
		r := Rule{Line: rn.Line}
		if kind == "allow" {
			r.PTYs, r.Orphans = PTYsReport, OrphansReport
		}
		for _, f := range fs.ordered {
			key := prefix + "." + f.name
			d.lines[key] = f.val.Line
			switch f.name {
			case "name":
				r.Name, err = d.string(f.val, key)
			case "exe":
				r.Exe, err = d.string(f.val, key)
			case "user":
				r.User, r.UID, err = d.user(f.val, key)
			case "ptys":
				r.PTYs, err = d.string(f.val, key)
			case "orphans":
				r.Orphans, err = d.string(f.val, key)
			case "disposable":
				r.Disposable, err = d.bool(f.val, key)
			case "watched_method":
				r.WatchedMethod, err = d.method(f.val, key)
			case "runtime":
				r.Runtime, err = d.string(f.val, key)
			}
			if err != nil {
				return nil, err
			}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func (d *decoder) scalar(n *yaml.Node, key, want string) error {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return d.errorf(n, "%s must be %s, got %s", key, want, describe(n))
	}
	return nil
}

func (d *decoder) string(n *yaml.Node, key string) (string, error) {
	if err := d.scalar(n, key, "a string"); err != nil {
		return "", err
	}
	if n.ShortTag() != "!!str" {
		return "", d.errorf(n, "%s must be a string, got %s (quote it if you mean the text %q)", key, describe(n), n.Value)
	}
	return n.Value, nil
}

// method reads a method name; validate checks which ones the key allows.
func (d *decoder) method(n *yaml.Node, key string) (Method, error) {
	v, err := d.string(n, key)
	return Method(v), err
}

func (d *decoder) int(n *yaml.Node, key string) (int, error) {
	if err := d.scalar(n, key, "an integer"); err != nil {
		return 0, err
	}
	var v int
	if n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		return 0, d.errorf(n, "%s must be an integer, got %s", key, describe(n))
	}
	return v, nil
}

func (d *decoder) bool(n *yaml.Node, key string) (bool, error) {
	if err := d.scalar(n, key, "true or false"); err != nil {
		return false, err
	}
	var v bool
	if n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		return false, d.errorf(n, "%s must be true or false, got %s", key, describe(n))
	}
	return v, nil
}

func (d *decoder) duration(n *yaml.Node, key string) (time.Duration, error) {
	if err := d.scalar(n, key, "a duration such as 90s or 5m"); err != nil {
		return 0, err
	}
	// A bare 0 is a valid duration; other bare numbers lack a unit and are
	// refused by time.ParseDuration with a message we replace.
	if tag := n.ShortTag(); tag != "!!str" && tag != "!!int" {
		return 0, d.errorf(n, "%s must be a duration such as 90s or 5m, got %s", key, describe(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, d.errorf(n, "%s: invalid duration %q (use Go syntax such as 90s, 5m, 1h)", key, n.Value)
	}
	return v, nil
}

// percent reads "80%" or a plain number such as 80 or 92.5.
func (d *decoder) percent(n *yaml.Node, key string) (float64, error) {
	if err := d.scalar(n, key, "a percentage such as 80%"); err != nil {
		return 0, err
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		var v float64
		if err := n.Decode(&v); err != nil {
			return 0, d.errorf(n, "%s must be a percentage such as 80%%, got %s", key, describe(n))
		}
		return v, nil
	case "!!str":
		s := strings.TrimSpace(strings.TrimSuffix(n.Value, "%"))
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, d.errorf(n, "%s must be a percentage such as 80%%, got %q", key, n.Value)
		}
		return v, nil
	default:
		return 0, d.errorf(n, "%s must be a percentage such as 80%%, got %s", key, describe(n))
	}
}

// user reads a user name or a numeric uid and resolves names now, so that a
// typo fails at load time instead of silently matching nobody.
func (d *decoder) user(n *yaml.Node, key string) (string, int, error) {
	if err := d.scalar(n, key, "a user name or uid"); err != nil {
		return "", 0, err
	}
	tag := n.ShortTag()
	if tag != "!!str" && tag != "!!int" {
		return "", 0, d.errorf(n, "%s must be a user name or uid, got %s", key, describe(n))
	}
	s := n.Value
	if tag == "!!int" || isDigits(s) {
		uid, err := strconv.ParseInt(s, 10, 64)
		if err != nil || uid < 0 || uid >= maxUID {
			return "", 0, d.errorf(n, "%s: invalid uid %q", key, s)
		}
		return s, int(uid), nil
	}
	if !validUserName(s) {
		return "", 0, d.errorf(n, "%s: invalid user name %q", key, s)
	}
	u, err := user.Lookup(s)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return "", 0, d.errorf(n, "%s: unknown user %q (not in the user database; use a numeric uid for a user that does not exist yet)", key, s)
		}
		return "", 0, d.errorf(n, "%s: cannot look up user %q: %v", key, s, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return "", 0, d.errorf(n, "%s: user %q has a non-numeric uid %q", key, s, u.Uid)
	}
	return s, uid, nil
}

// maxUID is (uid_t)-1, which no real user has.
const maxUID = 1<<32 - 1

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validUserName refuses strings that cannot be a user name in passwd, so they
// never reach the user database.
func validUserName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == ':' || c == '/' {
			return false
		}
	}
	return true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's kind for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		default:
			return fmt.Sprintf("a value tagged %q (%q)", n.ShortTag(), n.Value)
		}
	default:
		return "nothing"
	}
}

// suggest returns the known key closest to s when it is close enough to be a
// likely typo, else "".
func suggest(s string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(s, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance, so that a swap such as "nmae" counts as one edit.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // not a typo of a short key; avoid work on huge input
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
