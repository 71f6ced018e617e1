package tpm

import (
	"strings"
	"testing"
)

func TestVulnerableFirmware(t *testing.T) {
	for _, tc := range []struct {
		manufacturer string
		fw           FirmwareVersion
		vulnerable   bool
		mentions     string // in the reason, when vulnerable
	}{
		// Intel PTT (CVE-2019-11090): the version the TPM-Fail paper attacked,
		// each line's last vulnerable and first fixed build.
		{"INTC", FirmwareVersion{11, 8, 50, 3399}, true, "11.8.70"},
		{"INTC", FirmwareVersion{11, 8, 69, 0}, true, "CVE-2019-11090"},
		{"INTC", FirmwareVersion{11, 8, 70, 3626}, false, ""},
		{"INTC", FirmwareVersion{11, 11, 65, 0}, true, "11.11.70"},
		{"INTC", FirmwareVersion{11, 11, 70, 0}, false, ""},
		{"INTC", FirmwareVersion{11, 22, 69, 0}, true, "11.22.70"},
		{"INTC", FirmwareVersion{11, 22, 80, 0}, false, ""},
		{"INTC", FirmwareVersion{12, 0, 35, 1427}, true, "12.0.45"},
		{"INTC", FirmwareVersion{12, 0, 45, 0}, false, ""},
		{"INTC", FirmwareVersion{14, 0, 9, 0}, true, "14.0.10"},
		{"INTC", FirmwareVersion{14, 0, 10, 0}, false, ""},
		{"INTC", FirmwareVersion{13, 0, 1, 0}, false, ""}, // "before 13.0.0"
		{"INTC", FirmwareVersion{15, 0, 20, 0}, false, ""},
		{"INTC", FirmwareVersion{16, 1, 25, 0}, false, ""},
		// CSME 11 lines with no fix of their own, and pre-CSME-11 firmware TPMs.
		{"INTC", FirmwareVersion{11, 7, 0, 0}, true, "CSME"},
		{"INTC", FirmwareVersion{11, 0, 25, 0}, true, "CSME"},
		{"INTC", FirmwareVersion{10, 0, 56, 0}, true, "no fix exists"},
		// TXE.
		{"INTC", FirmwareVersion{3, 1, 65, 0}, true, "3.1.70"},
		{"INTC", FirmwareVersion{3, 1, 70, 0}, false, ""},
		{"INTC", FirmwareVersion{3, 0, 10, 0}, true, "ME/TXE"},
		{"INTC", FirmwareVersion{4, 0, 15, 1148}, true, "4.0.20"},
		{"INTC", FirmwareVersion{4, 0, 20, 0}, false, ""},
		// SPS.
		{"INTC", FirmwareVersion{4, 1, 4, 297}, true, "04.01.04.305"},
		{"INTC", FirmwareVersion{4, 1, 4, 305}, false, ""},
		{"INTC", FirmwareVersion{4, 8, 4, 46}, true, "04.08.04.047"},
		{"INTC", FirmwareVersion{4, 8, 4, 47}, false, ""},
		{"INTC", FirmwareVersion{4, 0, 4, 101}, true, "SPS SoC"},
		{"INTC", FirmwareVersion{4, 0, 4, 191}, false, ""},
		// ST33 (CVE-2019-16863), ST's table.
		{"STM", FirmwareVersion{71, 12, 0, 0}, true, "71.16"},
		{"STM", FirmwareVersion{71, 16, 0, 0}, false, ""},
		{"STM", FirmwareVersion{73, 4, 17568, 4452}, true, "ST33TPHF2ESPI firmware 73.4"},
		{"STM", FirmwareVersion{73, 8, 0, 0}, true, "73.64"},
		{"STM", FirmwareVersion{73, 5, 0, 0}, true, "ST33TPHF2EI2C"},
		{"STM", FirmwareVersion{73, 9, 0, 0}, true, "73.65"},
		{"STM", FirmwareVersion{73, 20, 0, 0}, false, ""},
		{"STM", FirmwareVersion{73, 64, 0, 0}, false, ""},
		{"STM", FirmwareVersion{74, 16, 0, 0}, true, "ST33TPHF20SPI"},
		{"STM", FirmwareVersion{74, 5, 0, 0}, true, "ST33TPHF20I2C"},
		{"STM", FirmwareVersion{74, 9, 0, 0}, true, "74.65"},
		{"STM", FirmwareVersion{74, 65, 0, 0}, false, ""},
		{"STM", FirmwareVersion{1, 512, 0, 0}, false, ""}, // newer ST33KTPM line
		// Other makers were not found leaking (Infineon, Nuvoton, swtpm).
		{"IFX", FirmwareVersion{7, 85, 4555, 0}, false, ""},
		{"NTC", FirmwareVersion{7, 2, 3, 1}, false, ""},
		{"IBM", FirmwareVersion{8217, 4131, 22, 13878}, false, ""},
		{"", FirmwareVersion{11, 8, 50, 3399}, false, ""},
	} {
		t.Run(tc.manufacturer+" "+tc.fw.String(), func(t *testing.T) {
			got, why := VulnerableFirmware(Info{Manufacturer: tc.manufacturer, Firmware: tc.fw})
			if got != tc.vulnerable {
				t.Fatalf("VulnerableFirmware = %v (%q), want %v", got, why, tc.vulnerable)
			}
			if got && !strings.Contains(why, tc.mentions) {
				t.Fatalf("reason %q does not mention %q", why, tc.mentions)
			}
			if !got && why != "" {
				t.Fatalf("not vulnerable, yet a reason: %q", why)
			}
		})
	}
}

func TestVendorText(t *testing.T) {
	for _, tc := range []struct {
		v    uint32
		want string
	}{
		{0x49424D00, "IBM"},
		{0x494E5443, "INTC"},
		{0x53544D20, "STM"},
		{0x322E3000, "2.0"},
		{0x53572020, "SW"},
		{0x2054504D, "TPM"},
		{0, ""},
		{0xFF00410A, "A"},
	} {
		if got := vendorText(tc.v); got != tc.want {
			t.Errorf("vendorText(%#x) = %q, want %q", tc.v, got, tc.want)
		}
	}
	if got := firmwareFrom(0x000B0008, 0x00320D47).String(); got != "11.8.50.3399" {
		t.Errorf("firmwareFrom = %s", got)
	}
}
