package tpm

import "fmt"

// TPM-Fail (Moghimi, Sunar, Eisenbarth, Heninger: "TPM-FAIL: TPM meets
// Timing and Lattice Attacks", USENIX Security 2020, https://tpm.fail): the
// time some TPMs take for an ECDSA signature depends on the length of the
// secret nonce, and a few thousand timed signatures give the private key
// away through a lattice attack, locally in minutes and over a network in
// hours. Two products were found to leak:
//
//   - Intel PTT, the firmware TPM in the ME/CSME, TXE and SPS:
//     CVE-2019-11090, INTEL-SA-00241. The CVE record reads: "Intel(R) PTT
//     before versions 11.8.70, 11.11.70, 11.22.70, 12.0.45, 13.0.0 and
//     14.0.10; Intel(R) TXE 3.1.70 and 4.0.20; Intel(R) SPS before versions
//     SPS_E5_04.01.04.305.0, SPS_SoC-X_04.00.04.108.0,
//     SPS_SoC-A_04.00.04.191.0, SPS_E3_04.01.04.086.0,
//     SPS_E3_04.08.04.047.0".
//   - STMicroelectronics ST33 TPMs: CVE-2019-16863 ("ST33TPHF2ESPI TPM
//     devices before 2019-09-12"); ST's own table ("Information on ST's TPM
//     firmware update – ECDSA signature generation", st.com/tpm-update)
//     lists the affected firmware and says that products and firmware not
//     listed are not affected.
//
// The PTT reports its ME/CSME/TXE/SPS version through
// TPM_PT_FIRMWARE_VERSION_1/2 as major.minor.build.patch (e.g. 11.8.50.3399),
// ST its firmware as major.minor in TPM_PT_FIRMWARE_VERSION_1 (e.g. 73.4).

// intelFixed is the first fixed build of each Intel firmware line the
// CVE names, keyed by major.minor.
var intelFixed = []struct {
	major, minor, build uint16
	product             string
}{
	{11, 8, 70, "CSME"},
	{11, 11, 70, "CSME"},
	{11, 22, 70, "CSME"},
	{12, 0, 45, "CSME"},
	{14, 0, 10, "CSME"},
	{3, 1, 70, "TXE"},
	{4, 0, 20, "TXE"},
}

// stAffected is ST's table: firmware major.minor and the fixed version.
var stAffected = map[[2]uint16]struct{ product, fixed string }{
	{71, 0}:  {"ST33TPHF2ESPI", "71.16"},
	{71, 4}:  {"ST33TPHF2ESPI", "71.16"},
	{71, 12}: {"ST33TPHF2ESPI", "71.16"},
	{73, 0}:  {"ST33TPHF2ESPI", "73.20"},
	{73, 4}:  {"ST33TPHF2ESPI", "73.20"},
	{73, 8}:  {"ST33TPHF2ESPI", "73.64"},
	{73, 5}:  {"ST33TPHF2EI2C", "73.21"},
	{73, 9}:  {"ST33TPHF2EI2C", "73.65"},
	{74, 0}:  {"ST33TPHF20SPI", "74.20"},
	{74, 4}:  {"ST33TPHF20SPI", "74.20"},
	{74, 8}:  {"ST33TPHF20SPI", "74.64"},
	{74, 16}: {"ST33TPHF20SPI", "74.64"},
	{74, 5}:  {"ST33TPHF20I2C", "74.21"},
	{74, 9}:  {"ST33TPHF20I2C", "74.65"},
}

// VulnerableFirmware reports whether the TPM's manufacturer and firmware
// are among those known to leak ECDSA nonces through timing (TPM-Fail), and
// if so why, naming the CVE and the firmware to update to. Where the
// sources leave a gap it errs towards "vulnerable": a false alarm costs
// signing speed, a miss costs the key.
func VulnerableFirmware(info Info) (bool, string) {
	switch info.Manufacturer {
	case "INTC":
		return intelVulnerable(info.Firmware)
	case "STM":
		fw := info.Firmware
		if a, ok := stAffected[[2]uint16{fw[0], fw[1]}]; ok {
			return true, fmt.Sprintf("CVE-2019-16863 (TPM-Fail): ST %s firmware %d.%d leaks ECDSA nonces through timing; update it to %s",
				a.product, fw[0], fw[1], a.fixed)
		}
	}
	return false, ""
}

func intelVulnerable(fw FirmwareVersion) (bool, string) {
	major, minor, build, patch := fw[0], fw[1], fw[2], fw[3]
	before := func(product string, fixed string) (bool, string) {
		return true, fmt.Sprintf("CVE-2019-11090 (TPM-Fail): Intel PTT in %s firmware %s leaks ECDSA nonces through timing; update it to %s or later",
			product, fw, fixed)
	}
	// SPS versions share major 4 with TXE; SPS builds have build 4
	// (04.00.04.x, 04.01.04.x, 04.08.04.x). Where two SPS lines share a
	// number, the later fix applies.
	if major == 4 && build == 4 {
		switch minor {
		case 0:
			if patch < 191 {
				return before("SPS SoC", "04.00.04.108 (SoC-X) or 04.00.04.191 (SoC-A)")
			}
			return false, ""
		case 1:
			if patch < 305 {
				return before("SPS", "04.01.04.305 (E5) or 04.01.04.086 (E3)")
			}
			return false, ""
		case 8:
			if patch < 47 {
				return before("SPS E3", "04.08.04.047")
			}
			return false, ""
		}
	}
	for _, l := range intelFixed {
		if major == l.major && minor == l.minor {
			if build < l.build {
				return before(l.product, fmt.Sprintf("%d.%d.%d", l.major, l.minor, l.build))
			}
			return false, ""
		}
	}
	switch {
	case major == 11 && minor < 22:
		// CSME 11 lines without a fixed release of their own (11.0-11.7 and
		// the like) are older than 11.22.70.
		return before("CSME", "a fixed line (11.8.70, 11.11.70, 11.22.70 or a later major)")
	case major < 11 && major != 4:
		// ME 9/10 and TXE 1-3 firmware TPMs predate the fixes; none was fixed.
		return before("ME/TXE", "a platform with fixed firmware (no fix exists for this line)")
	}
	// 13.x ("before 13.0.0" in the CVE), 15 and later, and lines the CVE
	// does not name.
	return false, ""
}
