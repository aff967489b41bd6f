package gossip

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// newStdLogger returns a *log.Logger (what serf and memberlist accept) that
// forwards every line to l. Their lines look like
// "[WARN] memberlist: Refuting a suspect message (from: x)"; the bracketed
// level becomes the slog level and "memberlist"/"serf" becomes the
// "component" attribute.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(logWriter{l: l}, "", 0)
}

type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	level, component, msg := parseLibLine(string(p))
	ctx := context.Background()
	if w.l.Enabled(ctx, level) {
		if component != "" {
			w.l.Log(ctx, level, msg, "component", component)
		} else {
			w.l.Log(ctx, level, msg)
		}
	}
	return len(p), nil
}

// parseLibLine splits a serf/memberlist log line into level, component and
// message. Lines without a recognised "[LEVEL]" prefix are logged at Info.
func parseLibLine(s string) (slog.Level, string, string) {
	s = strings.TrimSpace(s)
	level := slog.LevelInfo
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			switch strings.ToUpper(s[1:end]) {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			default:
				return level, "", s
			}
			s = strings.TrimSpace(s[end+1:])
		}
	}
	for _, c := range []string{"memberlist", "serf"} {
		if rest, ok := strings.CutPrefix(s, c+": "); ok {
			return level, c, rest
		}
	}
	return level, "", s
}
