//go:build bundled

package bundle

import _ "embed" // the archive scripts/build makes

//go:embed assets/bin.tar.zst
var embeddedArchive string

//go:embed assets/bin.tar.sha256
var embeddedSum string

func init() { archive, archiveSum = embeddedArchive, embeddedSum }
