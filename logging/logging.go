// Package logging sets up the process-wide logger for our own glue code.
//
// Upstream components log through klog; our code logs through logrus (which
// kine also uses) with a "[component]" prefix so a reader can tell who speaks.
package logging

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
)

// componentKey is the logrus field that names the speaking component.
const componentKey = "component"

// Setup configures the logrus standard logger for the whole process.
func Setup(debug bool) {
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(&prefixFormatter{})
	if debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
}

// For returns a logger whose lines start with "[name]".
func For(name string) *logrus.Entry {
	return logrus.WithField(componentKey, name)
}

// prefixFormatter prints `I1123 09:30:01.123 [kine] message key=value`, close
// to klog's layout so our lines and upstream lines interleave readably.
type prefixFormatter struct{}

func (f *prefixFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var b bytes.Buffer
	level := strings.ToUpper(e.Level.String()[:1])
	b.WriteString(level)
	b.WriteString(e.Time.Format("0102 15:04:05.000000"))
	if c, ok := e.Data[componentKey]; ok {
		fmt.Fprintf(&b, " [%v]", c)
	}
	b.WriteByte(' ')
	b.WriteString(e.Message)
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		if k != componentKey {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, e.Data[k])
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}
