package unitgen

import (
	"os"
	"path/filepath"
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
			err = CheckDropins(filepath.Join(dir, tt.out), res.Unit, tt.from)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckDropins: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.wantLine) || !strings.HasSuffix(err.Error(), "nothing written")):
				t.Fatalf("CheckDropins: %v\nwant %q and %q", err, tt.wantErr, tt.wantLine)
			}
		})
	}
}
