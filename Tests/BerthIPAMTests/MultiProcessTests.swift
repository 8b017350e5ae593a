import Foundation
import Testing
@testable import BerthCNI
@testable import BerthIPAM
import BerthJSON
import BerthNet

/// The built `berth-ipam`: BERTH_BIN_DIR, or beside the test bundle.
let berthIPAMPath: String = {
    if let dir = ProcessInfo.processInfo.environment["BERTH_BIN_DIR"] { return dir + "/berth-ipam" }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("berth-ipam").path
}()

/// A started `berth-ipam` process.
struct IPAMProcess {
    let process: Process
    let output: Pipe

    init(_ command: String, containerID: String, config: String) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: berthIPAMPath)
        process.environment = ["CNI_COMMAND": command, "CNI_CONTAINERID": containerID, "CNI_IFNAME": "eth0",
                               "CNI_NETNS": "/run/netns/unused", "CNI_PATH": "/nonexistent"]
        output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        process.standardError = FileHandle.nullDevice
        try process.run()
        input.fileHandleForWriting.write(Data(config.utf8))
        try input.fileHandleForWriting.close()
    }

    /// Waits; returns exit status and parsed stdout.
    func finish() -> (status: Int32, json: JSON?) {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, try? JSON.parse(Array(data)))
    }
}

@Suite("berth-ipam across processes", .serialized)
struct MultiProcessTests {
    static func config(_ dir: TemporaryDataDir, subnet: String = "10.6.0.0/24") -> String {
        #"{"cniVersion":"1.1.0","name":"mp","type":"berth","ipam":{"type":"berth-ipam","dataDir":"\#(dir.path)","subnet":"\#(subnet)"}}"#
    }

    static func allocator(_ dir: TemporaryDataDir) throws -> AddressAllocator {
        let (network, reader) = try NetworkConfig.decode(Array(config(dir).utf8))
        return AddressAllocator(config: try IPAMConfig(network: network, reader: reader, cniArgs: []))
    }

    /// Reads every record and address file; fails on anything unreadable or
    /// inconsistent. Returns the held addresses by owner.
    static func verifyStore(_ dir: TemporaryDataDir) throws -> [AttachmentKey: [IPAddress]] {
        let store = try AllocationStore(dataDir: dir.path, network: "mp")
        var held: [AttachmentKey: [IPAddress]] = [:]
        for (ip, owner) in try store.allAddresses() {
            let owner = try #require(owner)
            #expect(!owner.containerID.isEmpty, "address \(ip) has an unreadable owner")
            held[owner, default: []].append(ip)
        }
        for key in try store.allRecordKeys() {
            _ = try store.record(for: key)  // throws when torn
        }
        return held
    }

    @Test("50 processes allocating at once get 50 distinct addresses; concurrent DELs and ADDs stay consistent")
    func fiftyProcesses() throws {
        let dir = TemporaryDataDir()
        let config = MultiProcessTests.config(dir)
        let adds = try (0..<50).map { try IPAMProcess("ADD", containerID: "c\($0)", config: config) }
        var addresses: [String: String] = [:]
        for (i, p) in adds.enumerated() {
            let (status, json) = p.finish()
            #expect(status == 0)
            addresses["c\(i)"] = json?["ips"]?.arrayValue?.first?["address"]?.stringValue
        }
        #expect(Set(addresses.values).count == 50)

        // Half of them leave while 25 others arrive, all at once.
        let dels = try (0..<25).map { try IPAMProcess("DEL", containerID: "c\($0)", config: config) }
        let newcomers = try (50..<75).map { try IPAMProcess("ADD", containerID: "c\($0)", config: config) }
        for p in dels { #expect(p.finish().status == 0) }
        for p in newcomers { #expect(p.finish().status == 0) }

        let held = try MultiProcessTests.verifyStore(dir)
        #expect(Set(held.keys.map(\.containerID)) == Set((25..<75).map { "c\($0)" }))
        let all = held.values.flatMap { $0 }
        #expect(all.count == 50)
        #expect(Set(all).count == 50)
    }

    @Test("processes killed at random instants of ADD and DEL leave a readable store without duplicates, and DEL and GC reclaim everything")
    func killedProcesses() throws {
        let dir = TemporaryDataDir()
        let config = MultiProcessTests.config(dir, subnet: "10.6.0.0/22")
        var ids: [String] = []
        var completed: [String: String] = [:]  // container -> address, from ADDs that finished
        for trial in 0..<150 {
            let id = "k\(trial)"
            ids.append(id)
            let p = try IPAMProcess("ADD", containerID: id, config: config)
            usleep(UInt32.random(in: 0...6000))
            kill(p.process.processIdentifier, SIGKILL)
            let (status, json) = p.finish()
            if status == 0, let a = json?["ips"]?.arrayValue?.first?["address"]?.stringValue { completed[id] = a }
            if trial % 3 == 0, let victim = ids.randomElement() {
                let d = try IPAMProcess("DEL", containerID: victim, config: config)
                usleep(UInt32.random(in: 0...6000))
                kill(d.process.processIdentifier, SIGKILL)
                // Finished or killed part-way, the victim may or may not still hold its
                // address; the store must only stay consistent, checked below.
                _ = d.finish()
                completed[victim] = nil
            }
        }
        let held = try MultiProcessTests.verifyStore(dir)
        let all = held.values.flatMap { $0 }
        #expect(Set(all).count == all.count, "an address is held twice")
        for (id, address) in completed {
            // A finished ADD that was not deleted afterwards still holds its address, and only it.
            let ip = IPPrefix(address)!.address
            #expect(held[key(id)] == [ip], "\(id) should hold \(address)")
        }
        #expect(completed.count > 0, "no ADD finished: the kill delays are too short to test anything")
        #expect(ids.contains { completed[$0] == nil }, "every ADD finished: no process was killed mid-way")

        // DEL of every container the test used, then GC with nothing valid: the store is empty.
        let a = try MultiProcessTests.allocator(dir)
        for id in ids.shuffled().prefix(ids.count / 2) { try a.del(key(id)) }
        try a.gc(keeping: [])
        #expect(try MultiProcessTests.verifyStore(dir).isEmpty)
        let store = try AllocationStore(dataDir: dir.path, network: "mp")
        #expect(try store.allRecordKeys().isEmpty)
        #expect(try store.scratch.names().isEmpty)
    }
}
