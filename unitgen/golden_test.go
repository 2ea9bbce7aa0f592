package unitgen

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/unitgen/golden and the examples")

const (
	testdata = "../testdata/unitgen"
	golden   = testdata + "/golden"
)

// presetUnits are the commands of the examples, one per daemon preset.
var presetUnits = []struct {
	name string
	o    Options
}{
	{"nginx", Options{Argv: []string{"/usr/sbin/nginx", "-g", "daemon off;"}}},
	{"haproxy", Options{Argv: []string{"/usr/sbin/haproxy", "-W", "-f", "/etc/haproxy/haproxy.cfg"}}},
	{"php-fpm", Options{Argv: []string{"/usr/sbin/php-fpm8.2", "--nodaemonize", "--fpm-config", "/etc/php/8.2/fpm/php-fpm.conf"},
		RunFlags: []string{"--drain-timeout=1m"}, DrainTimeout: time.Minute}},
	{"gunicorn", Options{Argv: []string{"/usr/bin/gunicorn", "--chdir", "/srv/app", "--bind", "127.0.0.1:8000", "--graceful-timeout", "30", "app:app"},
		User: "www-data", Group: "www-data"}},
	{"unicorn", Options{Argv: []string{"/usr/local/bin/unicorn", "-c", "/srv/app/config/unicorn.rb", "-E", "production"},
		RunFlags: []string{"--drain-delay=5s"}, DrainDelay: 5 * time.Second, Env: []string{"RAILS_ENV=production"}}},
	// The presets added with the daemon matrix (e2e/matrix_test.go), as
	// Debian 12 installs them; each README gives the graceshim unit
	// command, which e2e/examples_test.go runs against the file.
	{"apache2", Options{Argv: []string{"/usr/sbin/apache2", "-DFOREGROUND"}, Env: []string{
		"APACHE_RUN_USER=www-data", "APACHE_RUN_GROUP=www-data", "APACHE_RUN_DIR=/run/apache2",
		"APACHE_PID_FILE=/run/apache2/apache2.pid", "APACHE_LOCK_DIR=/run/lock/apache2", "APACHE_LOG_DIR=/var/log/apache2"}}},
	{"caddy", Options{Argv: []string{"/usr/bin/caddy", "run", "--environ", "--config", "/etc/caddy/Caddyfile"}, User: "caddy", Group: "caddy"}},
	{"lighttpd", Options{Argv: []string{"/usr/sbin/lighttpd", "-D", "-f", "/etc/lighttpd/lighttpd.conf"}}},
	{"uwsgi", Options{Argv: []string{"/usr/bin/uwsgi", "--ini", "/etc/uwsgi/app.ini", "--master", "--hook-master-start", "unix_signal:15 gracefully_kill_them_all"},
		User: "www-data", Group: "www-data"}},
	{"puma", Options{Argv: []string{"/usr/bin/puma", "-C", "/srv/app/config/puma.rb"}, User: "www-data", Group: "www-data"}},
	{"redis", Options{Argv: []string{"/usr/bin/redis-server", "/etc/redis/redis.conf", "--supervised", "systemd", "--daemonize", "no"}, User: "redis", Group: "redis"}},
	{"memcached", Options{Argv: []string{"/usr/bin/memcached", "-l", "127.0.0.1", "-p", "11211", "-m", "64"}, User: "memcache", Group: "memcache"}},
}

// variantUnits exercise the options beyond the presets.
var variantUnits = []struct {
	name string
	o    Options
}{
	{"nginx-hardening", Options{Argv: []string{"/usr/sbin/nginx", "-g", "daemon off;"}, Hardening: true}},
	{"nginx-pidfile", Options{Argv: []string{"/usr/sbin/nginx"}, RunFlags: []string{"--pidfile=/run/nginx.pid", "--ready-timeout=1m"}, ReadyTimeout: time.Minute}},
	{"nginx-nobound", Options{Argv: []string{"/usr/sbin/nginx", "-g", "daemon off;"}, RunFlags: []string{"--drain-timeout=0s"}, DrainTimeout: -1}},
	{"quoting", Options{
		Argv:        []string{"/bin/echo", "two words", `"dq"`, "'sq'", "$HOME", "${X}", "100%", `back\slash`, ";", `\;`, "", "tab\there", "ünï"},
		Description: "echo 100% of it",
		Env:         []string{`MSG=say "hi" 100% \o/`, "EMPTY="},
		User:        "www-data",
	}},
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	checkFile(t, filepath.Join(golden, name), got, name+" differs from the golden file (go test -update rewrites it)")
}

// checkFile compares got with the file at path, or with -update writes it
// there; complaint says what a difference means.
func checkFile(t *testing.T, path string, got []byte, complaint string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s\n--- got\n%s\n--- want\n%s", complaint, got, want)
	}
}

// bands are the systemd versions the golden files cover: CentOS 7's 219
// (no EXTEND_TIMEOUT_USEC) and Debian 12's 252.
var bands = []int{219, 252}

func TestGenerateGolden(t *testing.T) {
	all := append(append([]struct {
		name string
		o    Options
	}{}, presetUnits...), variantUnits...)
	for _, tc := range all {
		for _, v := range bands {
			name := tc.name + "-" + itoa(v)
			t.Run(name, func(t *testing.T) {
				o := tc.o
				o.SystemdVersion = v
				got, err := Generate(o)
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, "generate-"+name+".service", got)
			})
		}
	}
}

func itoa(v int) string { return strconv.Itoa(v) }

// convertInputs are the test units in the styles that ship today: every
// file of testdata/unitgen/units but empty.service, which systemd refuses.
var convertInputs = func() []string {
	files, err := filepath.Glob(filepath.Join(testdata, "units", "*.service"))
	if err != nil {
		panic(err)
	}
	var out []string
	for _, f := range files {
		if b := filepath.Base(f); b != "empty.service" {
			out = append(out, b)
		}
	}
	return out
}()

func readTestUnit(t *testing.T, name string) *Unit {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "units", name))
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestConvertGolden(t *testing.T) {
	for _, in := range convertInputs {
		for _, v := range bands {
			for _, dropin := range []bool{false, true} {
				kind, ext := "from", ".service"
				if dropin {
					kind, ext = "dropin", ".conf"
				}
				name := kind + "-" + strings.TrimSuffix(in, ".service") + "-" + itoa(v) + ext
				t.Run(name, func(t *testing.T) {
					u := readTestUnit(t, in)
					res, err := Convert(u, Options{SystemdVersion: v}, dropin)
					if err != nil {
						t.Fatal(err)
					}
					checkGolden(t, name, res.Unit)
					if dropin {
						return
					}
					// Converting the result again changes nothing but
					// the comments: its flags, bounds, reload and exit
					// codes are graceshim's already.
					again, _, err := Parse(name, res.Unit)
					if err != nil {
						t.Fatal(err)
					}
					res2, err := Convert(again, Options{SystemdVersion: v}, false)
					if err != nil {
						t.Fatalf("converting %s again: %v", name, err)
					}
					if a, b := body(res.Unit), body(res2.Unit); a != b {
						t.Errorf("converting %s again changed it:\n--- first\n%s\n--- again\n%s", name, a, b)
					}
				})
			}
		}
	}
}

// body is a unit without its comment lines.
func body(unit []byte) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(unit), "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// TestLintGolden keeps lint's verdict on every test unit, as JSON and as
// the text graceshim lint prints (the parser's warnings first).
func TestLintGolden(t *testing.T) {
	for _, in := range convertInputs {
		t.Run(in, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(testdata, "units", in))
			if err != nil {
				t.Fatal(err)
			}
			u, warns, err := Parse(in, data)
			if err != nil {
				t.Fatal(err)
			}
			fs := Lint(u, LintOptions{SystemdVersion: 252, Root: filepath.Join(testdata, "root")})
			if fs == nil {
				fs = []Finding{}
			}
			got, err := json.MarshalIndent(fs, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			base := "lint-" + strings.TrimSuffix(in, ".service")
			checkGolden(t, base+".json", append(got, '\n'))
			var text bytes.Buffer
			for _, w := range warns {
				fmt.Fprintf(&text, "warning: %s\n", w)
			}
			problems := 0
			for _, f := range fs {
				fmt.Fprintln(&text, f)
				if f.Severity != SeverityNote {
					problems++
				}
			}
			if problems == 0 {
				fmt.Fprintf(&text, "%s: no stop problems found\n", in)
			}
			checkGolden(t, base+".txt", text.Bytes())
		})
	}
}

// TestExamples keeps examples/*/ in step with the generator: each is the
// preset unit for Debian 12's systemd.
func TestExamples(t *testing.T) {
	for _, tc := range presetUnits {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.SystemdVersion = 252
			got, err := Generate(o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("..", "examples", tc.name, tc.name+".service")
			checkFile(t, path, got, path+" is out of date: go test ./unitgen -run TestExamples -update")
		})
	}
}

// verify runs the real systemd-analyze verify on the unit at path and
// fails on a non-zero exit or any complaint that names the file under
// test (or its drop-in directory). verify also loads the host's other
// units and prints their warnings (FACTS.md section 7: Debian's unicorn
// package makes every verify print one), so those lines are not ours.
func verify(t *testing.T, path string) {
	t.Helper()
	for _, l := range verifyComplaints(t, path) {
		data, _ := os.ReadFile(path)
		t.Errorf("systemd-analyze verify %s: %s\n--- unit\n%s", filepath.Base(path), l, data)
	}
}

// verifyComplaints runs systemd-analyze verify on path and returns its
// exit status (when not 0) and the lines that name path.
func verifyComplaints(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
	var bad []string
	base := filepath.Base(path)
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && (strings.Contains(l, path) || strings.Contains(l, base)) {
			bad = append(bad, l)
		}
	}
	if err != nil {
		bad = append(bad, fmt.Sprintf("exit: %v\n%s", err, out))
	}
	return bad
}

func needAnalyze(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
}

// selfPath is an executable that exists, for graceshim's path in units
// given to systemd-analyze verify (it checks that ExecStart= exists).
func selfPath(t *testing.T) string {
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyGenerated(t *testing.T) {
	needAnalyze(t)
	all := append(append([]struct {
		name string
		o    Options
	}{}, presetUnits...), variantUnits...)
	dir := t.TempDir()
	for _, tc := range all {
		for _, v := range bands {
			for _, hard := range []bool{false, true} {
				o := tc.o
				o.SystemdVersion = v
				o.Graceshim = selfPath(t)
				o.Hardening = o.Hardening || hard
				data, err := Generate(o)
				if err != nil {
					t.Fatal(err)
				}
				name := tc.name + "-" + itoa(v)
				if hard {
					name += "-hard"
				}
				path := filepath.Join(dir, name+".service")
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Run(name, func(t *testing.T) { verify(t, path) })
			}
		}
	}
}

// TestVerifyConverted checks every converted unit and drop-in with the
// real validator. The inputs name programs of other hosts (httpd, squid,
// gunicorn) and keep odd lines on purpose, so a complaint counts only when
// verify does not make it about the original unit too: the original is
// verified alone under the same name, and its complaints (line numbers
// aside) are the inputs' own.
func TestVerifyConverted(t *testing.T) {
	needAnalyze(t)
	for _, in := range convertInputs {
		orig, err := os.ReadFile(filepath.Join(testdata, "units", in))
		if err != nil {
			t.Fatal(err)
		}
		origDir := t.TempDir()
		origPath := filepath.Join(origDir, "x-"+in)
		if err := os.WriteFile(origPath, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		origOut, origErr := exec.Command("systemd-analyze", "verify", "--man=no", origPath).CombinedOutput()
		known := map[string]bool{}
		for _, l := range strings.Split(string(origOut), "\n") {
			known[verifyMessage(l)] = true
		}
		for _, dropin := range []bool{false, true} {
			name := strings.TrimSuffix(in, ".service")
			if dropin {
				name += "-dropin"
			}
			t.Run(name, func(t *testing.T) {
				u := readTestUnit(t, in)
				res, err := Convert(u, Options{SystemdVersion: 252, Graceshim: selfPath(t)}, dropin)
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				path := filepath.Join(dir, "x-"+in)
				if dropin {
					if err := os.WriteFile(path, orig, 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.Mkdir(path+".d", 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(path+".d", "graceshim.conf"), res.Unit, 0o644); err != nil {
						t.Fatal(err)
					}
				} else if err := os.WriteFile(path, res.Unit, 0o644); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
				for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					if l == "" || !strings.Contains(l, "x-"+strings.TrimSuffix(in, ".service")) || known[verifyMessage(l)] {
						continue
					}
					t.Errorf("systemd-analyze verify: %s\n--- unit\n%s", l, res.Unit)
				}
				if err != nil && origErr == nil {
					t.Errorf("systemd-analyze verify: %v (the original passes)\n%s", err, out)
				}
			})
		}
	}
}

var verifyPlace = regexp.MustCompile(`^(\S*/)?([^/\s:]+)(:\d+)?: `)

// verifyMessage is a verify complaint without its directory and line
// number, to compare complaints about two versions of a unit.
func verifyMessage(l string) string {
	return verifyPlace.ReplaceAllString(strings.TrimSpace(l), "$2: ")
}

// TestVerifyRealDebianUnits converts the units Debian 12's packages
// install, as units and drop-ins, and verifies them the way
// TestVerifyConverted does. A package that is not installed is skipped;
// CI installs nginx, apache2, haproxy, php8.2-fpm and redis-server
// (.ci/install-deps).
func TestVerifyRealDebianUnits(t *testing.T) {
	needAnalyze(t)
	for _, name := range []string{"nginx", "apache2", "apache2@", "haproxy", "php8.2-fpm", "redis-server", "lighttpd", "caddy", "memcached", "postgresql@"} {
		t.Run(name, func(t *testing.T) {
			real := "/lib/systemd/system/" + name + ".service"
			orig, err := os.ReadFile(real)
			if err != nil {
				t.Skipf("%s not installed: %v", real, err)
			}
			u, _, err := Parse(real, orig)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			origPath := filepath.Join(dir, "orig", name+".service")
			_ = os.Mkdir(filepath.Dir(origPath), 0o755)
			if err := os.WriteFile(origPath, orig, 0o644); err != nil {
				t.Fatal(err)
			}
			origOut, origErr := exec.Command("systemd-analyze", "verify", "--man=no", origPath).CombinedOutput()
			known := map[string]bool{}
			for _, l := range strings.Split(string(origOut), "\n") {
				known[verifyMessage(l)] = true
			}
			for _, dropin := range []bool{false, true} {
				res, err := Convert(u, Options{SystemdVersion: 252, Graceshim: selfPath(t)}, dropin)
				if err != nil {
					t.Fatal(err)
				}
				sub := filepath.Join(dir, map[bool]string{false: "unit", true: "dropin"}[dropin])
				path := filepath.Join(sub, name+".service")
				_ = os.Mkdir(sub, 0o755)
				if dropin {
					_ = os.WriteFile(path, orig, 0o644)
					_ = os.Mkdir(path+".d", 0o755)
					_ = os.WriteFile(filepath.Join(path+".d", "graceshim.conf"), res.Unit, 0o644)
				} else {
					_ = os.WriteFile(path, res.Unit, 0o644)
				}
				out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
				for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					if l == "" || !strings.Contains(l, path) || known[verifyMessage(l)] {
						continue
					}
					t.Errorf("dropin=%v: systemd-analyze verify: %s\n--- unit\n%s", dropin, l, res.Unit)
				}
				if err != nil && origErr == nil {
					t.Errorf("dropin=%v: systemd-analyze verify: %v (the original passes)\n%s", dropin, err, out)
				}
				if strings.Contains(string(res.Unit), "\nExecReload=/bin/kill") {
					t.Errorf("dropin=%v: a kill reload survived:\n%s", dropin, res.Unit)
				}
			}
		})
	}
}

// TestVerifyRealDebianNginx converts the nginx.service that Debian's nginx
// package installs, as a unit and as a drop-in, and verifies both.
func TestVerifyRealDebianNginx(t *testing.T) {
	needAnalyze(t)
	const real = "/lib/systemd/system/nginx.service"
	data, err := os.ReadFile(real)
	if err != nil {
		t.Skipf("%s not installed (Debian package nginx-common): %v", real, err)
	}
	u, warns, err := Parse(real, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) > 0 {
		t.Errorf("warnings on Debian's own unit: %v", warns)
	}
	for _, dropin := range []bool{false, true} {
		res, err := Convert(u, Options{SystemdVersion: 252, Graceshim: selfPath(t)}, dropin)
		if err != nil {
			t.Fatal(err)
		}
		s := string(res.Unit)
		for _, want := range []string{"Type=notify", "KillMode=mixed", "--pidfile=/run/nginx.pid -- /usr/sbin/nginx -g 'daemon on; master_process on;'", "ExecStartPre=/usr/sbin/nginx -t -q"} {
			if dropin && strings.HasPrefix(want, "ExecStartPre") {
				continue
			}
			if !strings.Contains(s, want) {
				t.Errorf("dropin=%v: converted unit lacks %q:\n%s", dropin, want, s)
			}
		}
		if strings.Contains(s, "\nExecStop=-/sbin/start-stop-daemon") || strings.Contains(s, "\nPIDFile=/run") {
			t.Errorf("dropin=%v: the stop dance or PIDFile survived:\n%s", dropin, s)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "nginx.service")
		if dropin {
			_ = os.WriteFile(path, data, 0o644)
			_ = os.Mkdir(path+".d", 0o755)
			_ = os.WriteFile(filepath.Join(path+".d", "graceshim.conf"), res.Unit, 0o644)
		} else {
			_ = os.WriteFile(path, res.Unit, 0o644)
		}
		verify(t, path)
	}
	fs := Lint(u, LintOptions{SystemdVersion: 252})
	if len(fs) == 0 || fs[0].Directive != "ExecStop" || fs[0].Line != 25 {
		t.Errorf("lint of Debian's nginx.service: want the ExecStop= stop dance at line 25, got %+v", fs)
	}
}
