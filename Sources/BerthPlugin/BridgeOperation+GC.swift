import BerthEndpoints
import BerthNames
import BerthCNI
import BerthEnforcement
import BerthFirewall
import BerthSystem

extension BridgeOperation {
    /// GC: the IPAM releases every allocation not in the valid list, and the
    /// rules of attachments no longer valid are removed; keeps going past a
    /// failure and reports the first.
    func gc(valid: [(containerID: String, ifname: String)]) throws {
        var firstError: (any Error)?
        do { try ipam?.gc() } catch { firstError = error }
        // Locks left by processes killed while holding them (no holder now).
        LockFile.removeUnheld()
        do {
            try AttachmentRules.removeAll(network: config.network.name, except: valid)
        } catch {
            firstError = firstError ?? error
        }
        do {
            for gone in try endpoints.removeAll(network: config.network.name, except: valid) {
                try PolicyEnforcement.release(gone.pod, state: policyState)
            }
        } catch { firstError = firstError ?? error }
        if let names = networkNames {
            let keep = Set(valid.map { CNIAttachmentKey(network: config.network.name, containerID: $0.containerID, ifname: $0.ifname).fileName })
            do {
                try names.forgetAll { keep.contains($0) }
                names.removeIfEmpty()
            } catch { firstError = firstError ?? error }
        }
        if valid.isEmpty {
            do { try releaseIsolationIfLast() } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }

    /// STATUS: ready when the IPAM could hand out an address.
    func status() throws {
        try ipam?.status()
    }
}
