import Foundation
import Testing
@testable import BerthCNI
@testable import BerthIPAM
import BerthNet

/// A private data directory, removed afterwards.
final class TemporaryDataDir {
    let path = NSTemporaryDirectory() + "berthtest-store-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func key(_ id: String, _ ifname: String = "eth0") -> AttachmentKey {
    AttachmentKey(containerID: id, ifname: ifname)
}

@Suite("Allocation store")
struct StoreTests {
    func allocator(_ dir: TemporaryDataDir, _ ranges: String = #"[[{"subnet":"10.5.0.0/29"}],[{"subnet":"fd05::/120"}]]"#,
                   runtime: String = "") throws -> AddressAllocator {
        AddressAllocator(config: try ipamConfig(#"{"type":"berth-ipam","dataDir":"\#(dir.path)","ranges":\#(ranges)}"#, runtime: runtime))
    }

    @Test("ADD gives one address per range set with the gateway; DEL frees them")
    func addDel() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir)
        let r = try a.add(key("c1"))
        #expect(r.ips.map(\.address.description) == ["10.5.0.2/29", "fd05::2/120"])
        #expect(r.ips.map { $0.gateway?.description } == ["10.5.0.1", "fd05::1"])
        try a.check(key("c1"))
        try a.del(key("c1"))
        #expect(try a.allocations().isEmpty)
        #expect(throws: CNIError.self) { try a.check(key("c1")) }
        try a.del(key("c1"))  // again: nothing held is fine
    }

    @Test("a repeated ADD for the same container and interface returns the same addresses")
    func repeatedAdd() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir)
        let first = try a.add(key("c1"))
        let again = try a.add(key("c1"))
        #expect(first == again)
        let otherInterface = try a.add(key("c1", "net1"))
        #expect(otherInterface.ips[0] != first.ips[0])
        #expect(try a.allocations().count == 4)
    }

    @Test("round-robin: a released address is not handed out before the rest of the range")
    func roundRobin() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir, #"[[{"subnet":"10.5.0.0/29"}]]"#)
        let first = try a.add(key("c1")).ips[0].address.address
        try a.del(key("c1"))
        var seen: [IPAddress] = []
        for i in 2...5 { seen.append(try a.add(key("c\(i)")).ips[0].address.address) }
        #expect(!seen.contains(first))
        #expect(try a.add(key("c6")).ips[0].address.address == first)
    }

    @Test("an exhausted range is a clear error naming the network and the range; STATUS says 50")
    func exhausted() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir, #"[[{"subnet":"10.5.0.0/30"}]]"#)
        _ = try a.add(key("c1"))
        do {
            _ = try a.add(key("c2"))
            Issue.record("allocated from a full range")
        } catch let error as CNIError {
            #expect(error.code == 11)
            #expect(error.msg.contains("net1") && error.msg.contains("10.5.0.0/30"))
        }
        do {
            try a.status()
            Issue.record("STATUS passed on a full range")
        } catch let error as CNIError {
            #expect(error.code == 50)
        }
        try a.del(key("c1"))
        try a.status()
    }

    @Test("a requested address is given when free and refused when another container holds it")
    func requested() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir, #"[[{"subnet":"10.5.0.0/24"}]]"#, runtime: #","runtimeConfig":{"ips":["10.5.0.77"]}"#)
        #expect(try a.add(key("c1")).ips[0].address.description == "10.5.0.77/24")
        #expect(try a.add(key("c1")).ips[0].address.description == "10.5.0.77/24")
        do {
            _ = try a.add(key("c2"))
            Issue.record("gave a held address twice")
        } catch let error as CNIError {
            #expect(error.msg.contains("10.5.0.77") && error.msg.contains("c1"))
        }
    }

    @Test("GC releases every allocation not listed as valid, and orphaned addresses")
    func gc() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir)
        for i in 1...3 { _ = try a.add(key("c\(i)")) }
        // An address file with no record behind it, in the format of earlier
        // stores ("ID\nIFNAME\n"), written by hand.
        #expect(FileManager.default.createFile(atPath: "\(dir.path)/net1/addresses/10.5.0.6",
                                               contents: Data("ghost\neth0\n".utf8)))
        #expect(try a.allocations().contains { $0.ip.description == "10.5.0.6" && $0.owner == key("ghost") })
        let released = try a.gc(keeping: [key("c2")])
        #expect(released == 5)
        #expect(Set(try a.allocations().compactMap { $0.owner }) == [key("c2")])
        try a.check(key("c2"))
    }

    @Test("an interrupted ADD (record written, addresses not claimed) is completed by a retry and cleaned by DEL")
    func interruptedAdd() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir)
        do {
            let store = try AllocationStore(dataDir: dir.path, network: "net1")
            try store.write(AttachmentRecord(key: key("c1"), ips: [.init(address: IPPrefix("10.5.0.4/29")!)]))
        }
        #expect(throws: CNIError.self) { try a.check(key("c1")) }
        let r = try a.add(key("c1"))
        #expect(r.ips.count == 2)
        try a.check(key("c1"))
        try a.del(key("c1"))
        #expect(try a.allocations().isEmpty)
        #expect(try AllocationStore(dataDir: dir.path, network: "net1").allRecordKeys().isEmpty)
    }

    @Test("an address is a hard link to its attachment's record: one new inode per ADD")
    func addressIsLinkToRecord() throws {
        let dir = TemporaryDataDir()
        _ = try allocator(dir).add(key("c1"))
        let root = "\(dir.path)/net1"
        var record = stat(), v4 = stat(), v6 = stat()
        #expect(lstat("\(root)/attachments/c1:eth0", &record) == 0)
        #expect(lstat("\(root)/addresses/10.5.0.2", &v4) == 0)
        #expect(lstat("\(root)/addresses/fd05::2", &v6) == 0)
        #expect(record.st_ino == v4.st_ino && record.st_ino == v6.st_ino)
        #expect(record.st_nlink == 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(root)/scratch").isEmpty)
    }

    @Test("a torn or foreign cursor is ignored: the scan starts at the range's beginning")
    func tornCursor() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir)
        _ = try a.add(key("c1"))
        for garbage in ["10.5.0.", "", "not an address", "10.5.0.200"] {
            #expect(FileManager.default.createFile(atPath: "\(dir.path)/net1/cursor-0", contents: Data(garbage.utf8)))
            let r = try a.add(key("c-\(garbage.count)"))
            #expect(r.ips.first?.address.description == "10.5.0.3/29", "cursor \(garbage)")
            try a.del(key("c-\(garbage.count)"))
        }
        // The cursor is rewritten in place at a fixed length: a longer cursor
        // of an earlier store leaves no tail behind.
        #expect(FileManager.default.createFile(atPath: "\(dir.path)/net1/cursor-0", contents: Data("10.5.0.123456".utf8)))
        _ = try a.add(key("c2"))
        let cursor = String(decoding: FileManager.default.contents(atPath: "\(dir.path)/net1/cursor-0")!, as: UTF8.self)
        #expect(cursor == "10.5.0.3" + String(repeating: "\n", count: 32))
        _ = try a.add(key("c3"))
        #expect(try AllocationStore(dataDir: dir.path, network: "net1").cursor(forSet: 0)?.description == "10.5.0.4")
    }

    @Test("an address file of an earlier store (\"ID\\nIFNAME\\n\") names its holder and is released by DEL")
    func earlierFormat() throws {
        let dir = TemporaryDataDir()
        let a = try allocator(dir)
        _ = try a.add(key("c1"))
        let root = "\(dir.path)/net1"
        for ip in ["10.5.0.2", "fd05::2"] {
            try FileManager.default.removeItem(atPath: "\(root)/addresses/\(ip)")
            #expect(FileManager.default.createFile(atPath: "\(root)/addresses/\(ip)", contents: Data("c1\neth0\n".utf8)))
        }
        try a.check(key("c1"))
        try a.del(key("c1"))
        #expect(try a.allocations().isEmpty)
    }

    @Test("the store is private: directories 0700, files 0600")
    func modes() throws {
        let dir = TemporaryDataDir()
        _ = try allocator(dir).add(key("c1"))
        let fm = FileManager.default
        let root = "\(dir.path)/net1"
        for path in [root, "\(root)/addresses", "\(root)/attachments"] {
            #expect((try fm.attributesOfItem(atPath: path)[.posixPermissions] as? Int) == 0o700, "\(path)")
        }
        #expect((try fm.attributesOfItem(atPath: "\(root)/addresses/10.5.0.2")[.posixPermissions] as? Int) == 0o600)
    }

    @Test("a network name that would leave the data directory is refused")
    func escapingName() {
        #expect(throws: StoreError.self) { try AllocationStore(dataDir: "/tmp", network: "../etc") }
        // The store says what is wrong; the plugin says it with CNI's codes: a bad name is the config's (7), the rest I/O (5).
        #expect(CNIError(ipamError: StoreError.badNetworkName("../etc", "it may not contain '/'")).code == 7)
        #expect(CNIError(ipamError: StoreError.noStore(network: "n", dataDir: "/d")).code == 5)
        #expect(CNIError(ipamError: StoreError.unreadableRecord(network: "n", path: "/d/n/x")).msg.contains("/d/n/x is unreadable"))
        #expect(throws: CNIError.self) { try ipamConfig(#"{"type":"berth-ipam","subnet":"10.0.0.0/24"}"#, name: "a/b") }
    }
}
