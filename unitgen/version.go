package unitgen

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

var versionLine = regexp.MustCompile(`^systemd (\d+)`)

// ParseVersion reads the first line of `systemctl --version`
// ("systemd 252 (252.38-1~deb12u1)").
func ParseVersion(out string) (int, error) {
	m := versionLine.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("cannot read a systemd version from %q", firstLine(out))
	}
	return strconv.Atoi(m[1])
}

// LocalVersion asks this host's systemctl for its version.
func LocalVersion(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("cannot run systemctl --version: %w", err)
	}
	return ParseVersion(string(out))
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
