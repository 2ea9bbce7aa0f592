package signals

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ReadFunc reads a file: os.ReadFile, or one that reads below another
// root. The package does no I/O of its own; callers pass the reader.
type ReadFunc func(path string) ([]byte, error)

var (
	fpmTimeoutRe = regexp.MustCompile(`(?m)^\s*process_control_timeout\s*=\s*"?([0-9]+)([smhd]?)"?\s*$`)
	fpmVersionRe = regexp.MustCompile(`^php-fpm(\d+\.\d+)$`)
)

// PHPFPMControlTimeout reads process_control_timeout from the
// configuration a php-fpm command line names (--fpm-config or -y), else
// the distribution's: Debian's /etc/php/X.Y/fpm/php-fpm.conf for
// php-fpmX.Y, Fedora's /etc/php-fpm.conf for php-fpm. It is a [global]
// setting, 0 by default (php-fpm.conf(5), "process_control_timeout: Time
// limit for child processes to wait for a reaction on signals from
// master"; Debian 12's php8.2-fpm ships it commented out). It returns the
// file it read.
func PHPFPMControlTimeout(argv []string, read ReadFunc) (path string, d time.Duration, err error) {
	if len(argv) == 0 {
		return "", 0, errors.New("no command")
	}
	path = flagValue(argv[1:], "--fpm-config", "-y")
	if path == "" {
		if m := fpmVersionRe.FindStringSubmatch(filepath.Base(argv[0])); m != nil {
			path = "/etc/php/" + m[1] + "/fpm/php-fpm.conf"
		} else {
			path = "/etc/php-fpm.conf"
		}
	}
	if !filepath.IsAbs(path) {
		return path, 0, errors.New("relative --fpm-config")
	}
	data, err := read(path)
	if err != nil {
		return path, 0, err
	}
	m := fpmTimeoutRe.FindAllStringSubmatch(string(data), -1)
	if m == nil {
		return path, 0, nil
	}
	last := m[len(m)-1]
	n, _ := strconv.Atoi(last[1])
	unit := map[string]time.Duration{"": time.Second, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[last[2]]
	return path, time.Duration(n) * unit, nil
}

// phpFPMCaveat is php-fpm's Preset.Caveat: with process_control_timeout
// 0, QUIT does not wait for running requests (measured with Debian 12's
// php8.2-fpm: 0 of 6 slow requests completed, with or without graceshim).
func phpFPMCaveat(argv []string, read ReadFunc) string {
	path, d, err := PHPFPMControlTimeout(argv, read)
	if err != nil || d > 0 {
		return ""
	}
	return fmt.Sprintf("php-fpm's process_control_timeout is 0 in %s (the default): its graceful stop (QUIT) cuts every running request as TERM does; set process_control_timeout = 30s (at least your longest request) in its [global] section", path)
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
