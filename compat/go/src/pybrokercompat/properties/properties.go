// Package properties reads the Kafka client properties file that the
// compat matrix passes with --security (see compat/security.py), for the
// Go scenario programs of compat/sarama and compat/kafka_go.
package properties

import (
	"bufio"
	"os"
	"strings"
)

// Read returns the file's key=value lines; blank lines and comments (# or !)
// are skipped, and spaces around keys and values dropped.
func Read(path string) (map[string]string, error) {
	props := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		kv := strings.SplitN(line, "=", 2)
		if len(kv) == 2 {
			props[strings.TrimSpace(kv[0])] = strings.TrimSpace(kv[1])
		}
	}
	return props, lines.Err()
}
