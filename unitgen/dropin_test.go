package unitgen

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCheckDropins: a drop-in beside the output that systemd applies
// after graceshim's settings (systemctl edit's override.conf sorts after
// graceshim.conf) would undo them, and one before it whose ExecStart= the
// conversion did not read would be replaced: both are refused.
func TestCheckDropins(t *testing.T) {
	const unitFile = "[Service]\nExecStart=/usr/sbin/nginx -g 'daemon on; master_process on;'\nPIDFile=/run/nginx.pid\nType=forking\n"
	// override.conf as systemctl edit writes it: its comment header,
	// then an ExecStart= reset and the command of the admin's choice.
	const override = "### Editing /etc/systemd/system/nginx.service.d/override.conf\n[Service]\nExecStart=\nExecStart=/usr/sbin/nginx -g 'daemon on; master_process on; worker_processes 2;'\n"
	parse := func(name, text string) *Unit {
		u, _, err := Parse(name, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	plain := parse("nginx.service", unitFile)
	// systemctl cat nginx: the unit file, then the drop-in.
	merged := parse("cat", unitFile+override)
	tests := []struct {
		name     string
		dropins  map[string]string
		out      string // the file written: NAME.service or NAME.service.d/FILE
		from     *Unit
		wantErr  string // "" passes
		wantLine string
	}{
		{"override after graceshim.conf", map[string]string{"override.conf": override}, "nginx.service.d/graceshim.conf", plain, "override.conf:3: ExecStart= is applied after", "zz-graceshim.conf"},
		{"override after the whole unit", map[string]string{"override.conf": override}, "nginx.service", plain, "override.conf:3: ExecStart= is applied after", "remove"},
		{"override before, not read", map[string]string{"override.conf": override}, "nginx.service.d/zz-graceshim.conf", plain, "override.conf:4: ExecStart=", "systemctl cat"},
		{"override before, read through systemctl cat", map[string]string{"override.conf": override}, "nginx.service.d/zz-graceshim.conf", merged, "", ""},
		{"a drop-in that sets nothing of graceshim's", map[string]string{"limits.conf": "[Service]\nLimitNOFILE=65536\n"}, "nginx.service", plain, "", ""},
		{"a timeout after graceshim's", map[string]string{"timeout.conf": "[Service]\nTimeoutStopSec=30\n"}, "nginx.service", plain, "timeout.conf:2: TimeoutStopSec=", ""},
		{"no drop-in directory", nil, "nginx.service", plain, "", ""},
		// systemctl cat's output has the drop-ins' settings in it, so the
		// unit written from it sets them too: a drop-in that sets them
		// again after it changes nothing graceshim relies on. After= and
		// Environment= add to their lists (systemd.unit(5)).
		{"the drop-ins read through systemctl cat, again after the unit", map[string]string{"limits.conf": "[Service]\nLimitNOFILE=65536\n", "after.conf": "[Unit]\nAfter=postgresql.service\n[Service]\nEnvironment=FOO=1\n"}, "nginx.service", parse("cat", unitFile+"[Unit]\nAfter=postgresql.service\n[Service]\nLimitNOFILE=65536\nEnvironment=FOO=1\n"), "", ""},
		{"a limit after graceshim's unit", map[string]string{"limits.conf": "[Service]\nLimitNOFILE=1024\n"}, "nginx.service", parse("cat", unitFile+"[Service]\nLimitNOFILE=65536\n"), "", ""},
		// An ExecStop= after the unit runs before systemd's SIGTERM
		// reaches graceshim, ahead of the drain.
		{"a stop command after graceshim's unit", map[string]string{"stop.conf": "[Service]\nExecStop=/bin/kill -QUIT $MAINPID\n"}, "nginx.service", plain, "stop.conf:2: ExecStop=", ""},
		{"graceshim's own KillMode again", map[string]string{"kill.conf": "[Service]\nKillMode=mixed\n"}, "nginx.service", plain, "", ""},
		// A later timeout that gives the stop more time, or none at all,
		// still covers graceshim's drain; only a shorter one cuts it.
		{"a longer stop timeout after graceshim's", map[string]string{"timeout.conf": "[Service]\nTimeoutStopSec=1h\n"}, "nginx.service", plain, "", ""},
		{"no stop timeout after graceshim's", map[string]string{"timeout.conf": "[Service]\nTimeoutStopSec=infinity\n"}, "nginx.service", plain, "", ""},
		{"a shorter TimeoutSec= after graceshim's", map[string]string{"timeout.conf": "[Service]\nTimeoutSec=90\n"}, "nginx.service", plain, "timeout.conf:2: TimeoutSec=90", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			d := filepath.Join(dir, "nginx.service.d")
			if tt.dropins != nil {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, text := range tt.dropins {
				if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dropin := strings.Contains(tt.out, ".service.d/")
			res, err := Convert(tt.from, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, dropin)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckDropinsIn(filepath.Join(dir, tt.out), res.Unit, tt.from, nil)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckDropins: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.wantLine) || !strings.HasSuffix(err.Error(), "nothing written")):
				t.Fatalf("CheckDropins: %v\nwant %q and %q", err, tt.wantErr, tt.wantLine)
			}
		})
	}
}

// TestCheckDropinsLoadPath: drop-ins of the unit in the other directories
// of systemd's load path are seen: the unit's own NAME.service.d/ under
// /run or /usr/lib, a prefix drop-in (php-.service.d/ for
// php-fpm.service), the type's service.d/ and a template's, and one of
// the same name in a directory of higher priority, which hides ours.
func TestCheckDropinsLoadPath(t *testing.T) {
	const unitFile = "[Service]\nType=notify\nExecStart=/usr/sbin/php-fpm8.2 --nodaemonize --fpm-config /etc/php/8.2/fpm/php-fpm.conf\nExecReload=/bin/kill -USR2 $MAINPID\n"
	// A packager's or an admin's drop-in, as systemctl edit or a
	// configuration tool writes them.
	const stop = "[Service]\nTimeoutStopSec=10\n"
	const limits = "[Service]\nLimitNOFILE=65536\n"
	tests := []struct {
		name    string
		unit    string            // the unit's name
		out     string            // "etc/UNIT" or "etc/UNIT.d/FILE"
		dropins map[string]string // path under the root -> text
		wantErr string            // "" passes
	}{
		{"the unit's drop-in under /run", "php8.2-fpm.service", "etc/php8.2-fpm.service", map[string]string{"run/php8.2-fpm.service.d/stop.conf": stop}, "run/php8.2-fpm.service.d/stop.conf:2: TimeoutStopSec=10"},
		{"the unit's drop-in under /usr/lib", "php8.2-fpm.service", "etc/php8.2-fpm.service", map[string]string{"lib/php8.2-fpm.service.d/stop.conf": stop}, "lib/php8.2-fpm.service.d/stop.conf:2"},
		{"a prefix drop-in", "php8.2-fpm.service", "etc/php8.2-fpm.service", map[string]string{"etc/php8.2-.service.d/stop.conf": stop}, "etc/php8.2-.service.d/stop.conf:2"},
		{"the type's drop-in", "php8.2-fpm.service", "etc/php8.2-fpm.service", map[string]string{"lib/service.d/stop.conf": stop}, "lib/service.d/stop.conf:2"},
		{"a template's drop-in for an instance", "app@blue.service", "etc/app@blue.service", map[string]string{"lib/app@.service.d/stop.conf": stop}, "lib/app@.service.d/stop.conf:2"},
		{"another unit's drop-in", "php8.2-fpm.service", "etc/php8.2-fpm.service", map[string]string{"lib/nginx.service.d/stop.conf": stop, "lib/php8.2-fpm.service.d/limits.conf": limits}, ""},
		// Of two of the same name, /etc's hides /usr/lib's.
		{"hidden by a drop-in of the same name in /etc", "php8.2-fpm.service", "etc/php8.2-fpm.service", map[string]string{"etc/php8.2-fpm.service.d/stop.conf": limits, "lib/php8.2-fpm.service.d/stop.conf": stop}, ""},
		// graceshim's drop-in in /run, one of the same name in /etc.
		{"ours hidden by /etc", "php8.2-fpm.service", "run/php8.2-fpm.service.d/graceshim.conf", map[string]string{"etc/php8.2-fpm.service.d/graceshim.conf": limits}, "is read instead of it"},
		{"ours hides /usr/lib's", "php8.2-fpm.service", "etc/php8.2-fpm.service.d/graceshim.conf", map[string]string{"lib/php8.2-fpm.service.d/graceshim.conf": stop}, ""},
		// Drop-ins apply by name whatever their directory: zz sorts after.
		{"a later name in /usr/lib's service.d", "php8.2-fpm.service", "etc/php8.2-fpm.service.d/graceshim.conf", map[string]string{"lib/service.d/zz-stop.conf": stop}, "lib/service.d/zz-stop.conf:2"},
		{"an earlier name in /usr/lib's service.d", "php8.2-fpm.service", "etc/php8.2-fpm.service.d/graceshim.conf", map[string]string{"lib/service.d/10-stop.conf": stop}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			loadPath := []string{filepath.Join(root, "etc"), filepath.Join(root, "run"), filepath.Join(root, "lib")}
			for _, d := range loadPath {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for p, text := range tt.dropins {
				p = filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			from, _, err := Parse(tt.unit, []byte(unitFile))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Convert(from, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, strings.Contains(tt.out, ".d/"))
			if err != nil {
				t.Fatal(err)
			}
			err = CheckDropinsIn(filepath.Join(root, tt.out), res.Unit, from, loadPath)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckDropinsIn: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasSuffix(err.Error(), "nothing written")):
				t.Fatalf("CheckDropinsIn: %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestDropinNames: the directories systemd 252 reads for a unit's
// drop-ins, most specific first.
func TestDropinNames(t *testing.T) {
	for name, want := range map[string]string{
		"nginx.service":        "nginx.service service",
		"php8.2-fpm.service":   "php8.2-fpm.service php8.2-.service service",
		"a-b-c.service":        "a-b-c.service a-b-.service a-.service service",
		"app@blue.service":     "app@blue.service app@.service service",
		"app@.service":         "app@.service service",
		"getty@tty-1.service":  "getty@tty-1.service getty@.service service",
		"web-app@blue.service": "web-app@blue.service web-app@.service web-@.service web-.service service",
		"web-app@.service":     "web-app@.service web-@.service web-.service service",
	} {
		if got := strings.Join(dropinNames(name), " "); got != want {
			t.Errorf("dropinNames(%s) = %s, want %s", name, got, want)
		}
	}
}

// TestUserLoadPath: a user manager's load path from the environment, as
// systemd-analyze --user unit-paths prints it for the same variables.
func TestUserLoadPath(t *testing.T) {
	env := map[string]string{"HOME": "/home/ann", "XDG_RUNTIME_DIR": "/run/user/1000"}
	got := UserLoadPath(func(k string) string { return env[k] })
	want := []string{"/home/ann/.config/systemd/user.control", "/run/user/1000/systemd/user.control", "/run/user/1000/systemd/transient",
		"/run/user/1000/systemd/generator.early", "/home/ann/.config/systemd/user", "/etc/xdg/systemd/user", "/etc/systemd/user",
		"/run/user/1000/systemd/user", "/run/systemd/user", "/run/user/1000/systemd/generator", "/home/ann/.local/share/systemd/user",
		"/usr/local/share/systemd/user", "/usr/share/systemd/user", "/usr/local/lib/systemd/user", "/usr/lib/systemd/user",
		"/run/user/1000/systemd/generator.late"}
	if !slices.Equal(got, want) {
		t.Errorf("UserLoadPath:\ngot  %q\nwant %q", got, want)
	}
	if p := LoadPathFor("/home/ann/.config/systemd/user/app.service"); !slices.Contains(p, "/etc/systemd/user") {
		t.Errorf("LoadPathFor a user unit = %q, want the user load path", p)
	}
	if p := LoadPathFor("/etc/systemd/system/app.service"); !slices.Equal(p, SystemLoadPath) {
		t.Errorf("LoadPathFor a system unit = %q, want SystemLoadPath", p)
	}
}

// TestLintSeesDropinsOnLoadPath: lint's note on drop-ins names those
// systemd applies from the other directories of its load path too, as
// systemctl edit's override.conf in /etc for a unit under /usr/lib.
func TestLintSeesDropinsOnLoadPath(t *testing.T) {
	root := t.TempDir()
	lib, etc := filepath.Join(root, "lib"), filepath.Join(root, "etc")
	files := map[string]string{
		"lib/nginx.service":                   "[Service]\nType=forking\nPIDFile=/run/nginx.pid\nExecStart=/usr/sbin/nginx -g 'daemon on; master_process on;'\nKillSignal=SIGQUIT\nKillMode=mixed\nTimeoutStopSec=1h\n",
		"etc/nginx.service.d/override.conf":   "### Editing /etc/systemd/system/nginx.service.d/override.conf\n[Service]\nKillSignal=SIGTERM\n",
		"etc/nginx.service.d/ignored.txt":     "not a drop-in\n",
		"lib/service.d/10-timeout-abort.conf": "[Service]\nTimeoutAbortSec=10s\n",
	}
	for p, text := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(lib, "nginx.service")
	u, _, err := Parse(path, []byte(files["lib/nginx.service"]))
	if err != nil {
		t.Fatal(err)
	}
	var note string
	for _, f := range Lint(u, LintOptions{SystemdVersion: 252, LoadPath: []string{etc, lib}}) {
		if f.Directive == "drop-in" {
			note = f.Problem
		}
	}
	for _, want := range []string{filepath.Join(etc, "nginx.service.d/override.conf"), filepath.Join(lib, "service.d/10-timeout-abort.conf")} {
		if !strings.Contains(note, want) {
			t.Errorf("lint's drop-in note %q does not name %s", note, want)
		}
	}
	if strings.Contains(note, "ignored.txt") {
		t.Errorf("lint's drop-in note names a file that is no drop-in: %q", note)
	}
}
