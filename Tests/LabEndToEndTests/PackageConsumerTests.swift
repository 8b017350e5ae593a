import Foundation
import Testing
import BerthSystem
import BerthTestSupport

/// Runs `args` (the first found on PATH, with the toolchain's directory added)
/// in `directory`; returns the exit status and what it printed (stdout and stderr).
/// Through `runExecutable`, not Foundation's `Process`: a long `swift build`
/// must not inherit pipes other tests' threads open meanwhile (see `shell`).
private func command(_ args: [String], in directory: String, environment extra: [String: String] = [:]) -> (status: Int32, out: String) {
    var env = ProcessInfo.processInfo.environment
    env["PATH"] = (env["PATH"].map { $0 + ":" } ?? "") + "/opt/swift/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for (k, v) in extra { env[k] = v }
    do {
        let r = try runExecutable("/usr/bin/env", arguments: ["-C", directory, "sh", "-c", "exec \"$@\" 2>&1", "sh"] + args,
                                  environment: env, input: [])
        return (r.status, String(decoding: r.stdout, as: UTF8.self))
    } catch {
        return (127, "\(error)")
    }
}

/// Berth as someone else's dependency: a package outside this repository
/// depends on it through a git URL and a version tag, as SwiftPM users do,
/// builds (SwiftPM refuses such a dependency if any target it uses has unsafe
/// flags) and runs a lab with `BerthLab`.
@Suite("Berth as a versioned dependency", .ownThreads, .enabled(if: getuid() == 0, "the lab needs root for namespaces and bridges"))
struct PackageConsumerTests {
    @Test("a package depending on Berth by git URL and version tag builds and runs a two-host lab")
    func versionedDependency() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let work = NSTemporaryDirectory() + "berthtest-consumer-\(getpid())"
        try? FileManager.default.removeItem(atPath: work)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let repo = "\(work)/berth", consumer = "\(work)/consumer"
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(consumer)/Sources/LabRunner", withIntermediateDirectories: true)

        // A repository of Berth's files as they are now (tracked, and new ones not ignored), tagged 1.0.0.
        let files = command(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], in: root)
        try #require(files.status == 0, "\(files.out)")
        for path in files.out.split(separator: "\0").map(String.init) where FileManager.default.fileExists(atPath: "\(root)/\(path)") {
            let target = "\(repo)/\(path)"
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "\(root)/\(path)", toPath: target)
        }
        let identity = ["-c", "user.name=berth-test", "-c", "user.email=berth-test@localhost"]
        for step in [["git", "init", "-q"], ["git", "add", "-A"], ["git"] + identity + ["commit", "-q", "-m", "Berth"],
                     ["git", "tag", "1.0.0"]] {
            let r = command(step, in: repo)
            try #require(r.status == 0, "\(step.joined(separator: " ")): \(r.out)")
        }

        let name = "pc\(getpid() % 100000)"
        let third = Int.random(in: 0...250)
        try """
        // swift-tools-version:6.0
        import PackageDescription

        let package = Package(
            name: "LabRunner",
            dependencies: [.package(url: "file://\(repo)", from: "1.0.0")],
            targets: [.executableTarget(name: "LabRunner", dependencies: [.product(name: "BerthLab", package: "berth")])]
        )
        """.write(toFile: "\(consumer)/Package.swift", atomically: false, encoding: .utf8)
        try """
        import BerthLab
        #if canImport(Glibc)
        import Glibc
        #endif

        // Usage: LabRunner PLUGIN_DIRECTORY
        let topology = try Topology.parse(\"\"\"
        {"name": "\(name)", "networks": [{"name": "net", "subnet": "10.237.\(third).0/24"}],
         "hosts": [{"name": "a", "networks": ["net"], "addresses": {"net": "10.237.\(third).10"}},
                   {"name": "b", "networks": ["net"]}]}
        \"\"\")
        let lab = Lab(topology, searchPath: [CommandLine.arguments[1]])
        do {
            try lab.up()
            let ping = try lab.run(on: "b", ["ping", "-c", "1", "-W", "2", "10.237.\(third).10"])
            try lab.down()
            print(ping.status == 0 ? "b reached a" : "b did not reach a: \\(ping.output)")
            exit(ping.status == 0 ? 0 : 1)
        } catch {
            try? lab.down()
            print("lab failed: \\(error)")
            exit(2)
        }
        """.write(toFile: "\(consumer)/Sources/LabRunner/main.swift", atomically: false, encoding: .utf8)

        // SwiftPM leaves lock files in TMPDIR: give it one that goes with the rest.
        try FileManager.default.createDirectory(atPath: "\(work)/tmp", withIntermediateDirectories: true)
        let build = command(["swift", "build"], in: consumer, environment: ["TMPDIR": "\(work)/tmp"])
        try #require(build.status == 0, "the consumer did not build:\n\(build.out.suffix(3000))")
        let resolved = (try? String(contentsOfFile: "\(consumer)/Package.resolved", encoding: .utf8)) ?? ""
        #expect(resolved.contains("\"version\" : \"1.0.0\""), "not resolved by version: \(resolved)")

        let plugins = URL(fileURLWithPath: berthctlPath).deletingLastPathComponent().path
        let run = command(["\(consumer)/.build/debug/LabRunner", plugins], in: consumer)
        #expect(run.status == 0 && run.out.contains("b reached a"), "\(run.out)")
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/labs/\(name)"), "the lab was not taken down")
    }
}
