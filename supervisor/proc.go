package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// readPIDFile reads a pid file: one decimal pid, surrounding space allowed.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read pid file %s: %w", path, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s does not hold a pid: %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}
