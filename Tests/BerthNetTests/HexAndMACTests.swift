import Testing
import BerthNet

@Suite("hex and MAC addresses")
struct HexAndMACTests {
    @Test("hex is lower case, two digits a byte, with an optional separator")
    func hex() {
        #expect(hexString([0x0a, 0x58, 0xff, 0x00]) == "0a58ff00")
        #expect(hexString([0x0a, 0x58, 0xff, 0x00], separator: ":") == "0a:58:ff:00")
        #expect(hexString([UInt8]()) == "")
    }

    @Test("MACs parse in either case; anything but six two-digit groups is refused",
          arguments: ["aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa:bb:cc:dd:ee:f", "aa-bb-cc-dd-ee-ff", "gg:bb:cc:dd:ee:ff", ""])
    func badMAC(text: String) {
        #expect(parseMAC(text) == nil)
    }

    @Test("a parsed MAC prints back in lower case")
    func macRoundTrip() {
        #expect(parseMAC("0A:58:0a:F4:00:01") == [0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x01])
        #expect(hexString(parseMAC("0A:58:0a:F4:00:01")!, separator: ":") == "0a:58:0a:f4:00:01")
    }

    @Test("random MACs are unicast and locally administered")
    func randomMAC() {
        for _ in 0..<64 {
            let mac = parseMAC(randomLocalMAC())!
            #expect(mac[0] & 0x01 == 0 && mac[0] & 0x02 == 0x02)
        }
    }
}
