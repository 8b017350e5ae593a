import Testing
import BerthNet

@Suite("IP addresses and prefixes")
struct IPAddressTests {
    @Test("parses and prints IPv4 and IPv6")
    func parsing() {
        #expect(IPAddress("10.1.2.3")?.description == "10.1.2.3")
        #expect(IPAddress("FD00:0:0::1")?.description == "fd00::1")
        #expect(IPAddress("10.1.2") == nil)
        #expect(IPAddress("1.2.3.4.5") == nil)
        #expect(IPAddress("") == nil)
        #expect(IPPrefix("10.1.2.3/24")?.network.description == "10.1.2.0/24")
        #expect(IPPrefix("10.1.2.3/33") == nil)
        #expect(IPPrefix("10.1.2.3") == nil)
        #expect(IPPrefix("10.1.2.3/+4") == nil)
        #expect(IPPrefix("fd00::5/64")?.network.description == "fd00::/64")
    }

    @Test("containment and overlap follow the prefix length")
    func containment() {
        let p = IPPrefix("10.1.0.0/16")!
        #expect(p.contains(IPAddress("10.1.255.255")!))
        #expect(!p.contains(IPAddress("10.2.0.0")!))
        #expect(!p.contains(IPAddress("::1")!))
        #expect(p.overlaps(IPPrefix("10.1.4.0/24")!))
        #expect(!p.overlaps(IPPrefix("10.2.0.0/24")!))
    }

    @Test("advancing carries across bytes and stops at the end of the space")
    func advancing() {
        #expect(IPAddress("10.0.0.255")!.advanced(by: 1)?.description == "10.0.1.0")
        #expect(IPAddress("10.0.0.0")!.advanced(by: 65536)?.description == "10.1.0.0")
        #expect(IPAddress("255.255.255.255")!.advanced(by: 1) == nil)
        #expect(IPAddress("fd00::ffff")!.advanced(by: 1)?.description == "fd00::1:0")
    }
}
