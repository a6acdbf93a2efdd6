package eventsourcing

import (
	"errors"
	"strings"
	"testing"
)

func TestMissingDialectImport(t *testing.T) {
	_, err := lookupOpener("mysql")
	if !errors.Is(err, ErrProgramming) || !strings.Contains(err.Error(), `import _ "github.com/seed06b138f8/eventsourcing/dialect/mysql"`) {
		t.Errorf("got %v, want an error naming the missing import", err)
	}
}
