package unitgen

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// Reading the settings of Apache, Caddy and php-fpm that decide how a
// graceful stop goes. Each reads the main configuration file the command
// line names (or the distribution's default) under root, and only that
// file: these are global settings, which distributions leave in it.

// readUnder reads path below root ("" is /).
func readUnder(root, path string) ([]byte, error) {
	if root != "" {
		path = filepath.Join(root, path)
	}
	return os.ReadFile(path)
}

// flagValue returns the value of a flag given as "-f X", "--flag X" or
// "--flag=X" in argv.
func flagValue(argv []string, names ...string) string {
	for i, a := range argv {
		for _, n := range names {
			if a == n && i+1 < len(argv) {
				return argv[i+1]
			}
			if strings.HasPrefix(n, "--") && strings.HasPrefix(a, n+"=") {
				return strings.TrimPrefix(a, n+"=")
			}
		}
	}
	return ""
}

var apacheGraceRe = regexp.MustCompile(`(?im)^\s*GracefulShutdownTimeout\s+(\d+)\s*$`)

// apacheGrace reads GracefulShutdownTimeout (seconds; 0 waits forever)
// from the configuration an Apache command line reads: -f FILE, else
// Debian's /etc/apache2/apache2.conf for apache2 and apachectl, Red Hat's
// etc/httpd/conf/httpd.conf under the binary's root for httpd (so SCL's
// /opt/rh/httpd24/root/usr/sbin/httpd reads /opt/rh/httpd24/root/etc/...).
func apacheGrace(root string, cmd []string) (path string, d time.Duration, err error) {
	path = flagValue(cmd[1:], "-f")
	bin := cmd[0]
	switch {
	case path != "" && filepath.IsAbs(path):
	case path != "":
		return path, 0, fmt.Errorf("relative -f %s: the server root is not known", path)
	case strings.HasPrefix(filepath.Base(bin), "apache2"):
		path = "/etc/apache2/apache2.conf"
	case filepath.Base(bin) == "httpd" && strings.HasSuffix(filepath.Dir(bin), "/usr/sbin"):
		path = strings.TrimSuffix(filepath.Dir(bin), "/usr/sbin") + "/etc/httpd/conf/httpd.conf"
	default:
		return "", 0, errors.New("unknown Apache build")
	}
	data, err := readUnder(root, path)
	if err != nil {
		return path, 0, err
	}
	if m := apacheGraceRe.FindAllStringSubmatch(string(data), -1); m != nil {
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return path, time.Duration(n) * time.Second, nil
	}
	return path, 0, nil
}

var (
	caddyGraceRe = regexp.MustCompile(`(?m)^\s*grace_period\s+(\S+)`)
	caddyJSONRe  = regexp.MustCompile(`"grace_period"\s*:\s*("?)([0-9a-z.]+)"?`)
)

// caddyGrace reads grace_period from the configuration `caddy run
// --config FILE` loads: a Caddyfile's global options block or JSON's
// apps.http.grace_period (a duration string or nanoseconds). Without
// --config Caddy reads ./Caddyfile, which lint cannot place.
func caddyGrace(root string, cmd []string) (path string, d time.Duration, err error) {
	path = flagValue(cmd[1:], "--config")
	if path == "" || !filepath.IsAbs(path) {
		return path, 0, errors.New("no absolute --config")
	}
	data, err := readUnder(root, path)
	if err != nil {
		return path, 0, err
	}
	text := string(data)
	if m := caddyJSONRe.FindStringSubmatch(text); m != nil && strings.HasSuffix(path, ".json") {
		if m[1] == "" {
			n, _ := strconv.ParseInt(m[2], 10, 64)
			return path, time.Duration(n), nil
		}
		d, _ := caddyDuration(m[2])
		return path, d, nil
	}
	if m := caddyGraceRe.FindStringSubmatch(text); m != nil {
		d, _ := caddyDuration(m[1])
		return path, d, nil
	}
	return path, 0, nil
}

// caddyDuration reads Go's durations plus Caddy's "d" for days.
func caddyDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		return time.Duration(days * float64(24*time.Hour)), err
	}
	return time.ParseDuration(s)
}

// phpFPMControlTimeout reads process_control_timeout from the
// configuration a php-fpm command line names, under root
// (signals.PHPFPMControlTimeout).
func phpFPMControlTimeout(root string, cmd []string) (path string, d time.Duration, err error) {
	return signals.PHPFPMControlTimeout(cmd, func(p string) ([]byte, error) { return readUnder(root, p) })
}

// lintPHPFPM: php-fpm's QUIT drains only when process_control_timeout is
// above 0 (php-fpm.conf(5): "Time limit for child processes to wait for a
// reaction on signals from master"; checked against Debian 12's php8.2-fpm,
// whose default 0 makes QUIT behave as TERM does).
func (c *lintCtx) lintPHPFPM() {
	if c.preset.Name != "php-fpm" || len(c.cmd) == 0 {
		return
	}
	path, d, err := phpFPMControlTimeout(c.opts.Root, c.cmd)
	if err != nil || d > 0 {
		return
	}
	c.add(c.start, "ExecStart", SeverityWarning,
		fmt.Sprintf("php-fpm's graceful stop (QUIT) waits for running requests only when process_control_timeout is above 0; %s leaves it at 0 (the default), so QUIT cuts them as TERM does, under graceshim too", path),
		fmt.Sprintf("set process_control_timeout = 30s (at least your longest request) in the [global] section of %s", path))
}
