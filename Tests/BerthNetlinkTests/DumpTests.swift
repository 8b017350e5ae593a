import Testing
import BerthNet
import BerthSystem
@testable import BerthNetlink

/// Reading needs no privilege: these run in the test's own namespace, as any user.
@Suite("netlink dumps in the test's own namespace")
struct DumpTests {
    @Test("lo is found by name and by index, holds 127.0.0.1/8, and its routes and ports read back")
    func loopback() throws {
        let socket = try RouteSocket()
        let lo = try #require(try socket.link(named: "lo"))
        #expect(try socket.link(index: lo.index)?.name == "lo")
        #expect(try socket.addresses(of: lo).contains(IPPrefix("127.0.0.1/8")!))
        #expect(try socket.link(holding: IPAddress("127.0.0.1")!)?.name == "lo")
        // The local table holds 127.0.0.0/8 through lo, when lo is up.
        if lo.isUp {
            #expect(try socket.routes(through: lo).contains { $0.dst == IPPrefix("127.0.0.0/8")! && $0.table == 255 })
        }
        #expect(try socket.portCount(master: lo.index) == 0, "lo is no bridge")
        #expect(try socket.link(named: "bnosuchlink") == nil)
    }

    @Test("every link of the namespace is read: the dump agrees with /sys/class/net")
    func everyLink() throws {
        let socket = try RouteSocket()
        let names = try socket.links().map(\.name)
        let sys = try DirectoryHandle(path: "/sys/class/net", create: false).names()
        #expect(!names.isEmpty)
        #expect(Set(names) == Set(sys))
    }
}
