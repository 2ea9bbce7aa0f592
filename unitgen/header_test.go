package unitgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHeaderSaysReloadOnlyWhenWritten: the header's sentence on
// graceshim reload is there exactly when the unit's ExecReload= runs it.
// A unit that keeps its own reload command (Debian's caddy.service runs
// caddy reload) or gets none (caddy run --resume, a socket-activated
// uWSGI whose options name no socket) must not be told it has one.
func TestHeaderSaysReloadOnlyWhenWritten(t *testing.T) {
	const sentence = "# ExecReload= runs graceshim reload"
	const graceshimReload = "ExecReload=/usr/bin/graceshim reload $MAINPID"
	var files []string
	for _, dir := range []string{"units", "activated"} {
		m, err := filepath.Glob(filepath.Join(testdata, dir, "*.service"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	checked := map[bool]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		u, _, err := Parse(f, data)
		if err != nil {
			continue // malformed on purpose
		}
		for _, dropin := range []bool{false, true} {
			res, err := Convert(u, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, dropin)
			if err != nil {
				continue // refused on purpose (not a server, ...)
			}
			out := string(res.Unit)
			says, has := strings.Contains(out, sentence), strings.Contains(out, "\n"+graceshimReload+"\n")
			if dropin && !strings.Contains(out, "\nExecReload=") {
				// A drop-in leaves the unit's ExecReload= in force.
				for _, d := range u.List("Service", "ExecReload") {
					has = has || "ExecReload="+d.Value == graceshimReload
				}
			}
			if says != has {
				t.Errorf("%s (drop-in %v): header says graceshim reload: %v, unit runs it: %v", f, dropin, says, has)
			}
			checked[has]++
		}
	}
	if checked[true] == 0 || checked[false] == 0 {
		t.Fatalf("checked %v units with and without graceshim reload; want some of each", checked)
	}
}

// TestHeaderNamesSystemctlCat: a unit converted from systemctl cat's
// output through a pipe says which unit it came from, not the pipe
// (/dev/fd/63), which names nothing once the command has run.
func TestHeaderNamesSystemctlCat(t *testing.T) {
	u, _, err := Parse("/dev/fd/63", []byte("# /lib/systemd/system/web.service\n[Service]\nExecStart=/usr/bin/gunicorn app:app\n\n# /etc/systemd/system/web.service.d/override.conf\n[Service]\nEnvironment=A=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/lib/systemd/system/web.service"
	res, err := Convert(u, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, false)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Unit)
	if strings.Contains(out, "/dev/fd/63") || !strings.Contains(out, "# Converted from systemctl cat web.service") {
		t.Errorf("header:\n%s\nwant it to name systemctl cat web.service, not the pipe", out)
	}
}
