// SPDX-License-Identifier: Apache-2.0
// Loads the out-of-tree example plugin with the real loader (ABI and fingerprint checks
// included) and makes one storage round trip through it.
// Usage: synergos_sdk_consumer_probe <plugin dir>
#include <cstdio>
#include <string>

#include <synergos/core/plugin/loader.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

namespace sdk = synergos::sdk;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <plugin dir>\n", argv[0]);
        return 2;
    }
    synergos::core::PluginLoader loader({argv[1]});
    sdk::testing::FakeHost host;
    synergos::core::PluginRequest request;
    request.kind = sdk::PluginKind::Storage;
    request.name = "hello";
    request.options = {{"max_records", "10"}};
    auto store = loader.create<sdk::StorageBackend>(request, host);
    if (!store) {
        std::fprintf(stderr, "%s\n", store.error().message.c_str());
        return 1;
    }
    const auto& info = store.value().get_deleter().library->info();
    std::printf("loaded %s %s (kind %s, ABI %d.%d) from %s\n", info.name.c_str(),
                info.version.c_str(), sdk::kind_name(info.kind), info.abi_major, info.abi_minor,
                info.file.c_str());

    if (auto started = store.value()->start(); !started) {
        std::fprintf(stderr, "start failed: %s\n", started.message().c_str());
        return 1;
    }
    sdk::Mutation insert;
    insert.mode = sdk::WriteMode::Insert;
    insert.kind = "Collaboration";
    insert.key = {{"collab_id", "c1"}};
    insert.document = R"({"name":"demo"})";
    auto written = store.value()->apply({insert});
    auto read = store.value()->get("Collaboration", insert.key);
    if (!written || !read || read->document != insert.document || read->doc_id != 1) {
        std::fprintf(stderr, "round trip failed: %s\n",
                     !written ? written.error().message.c_str()
                     : !read  ? read.error().message.c_str()
                              : "record differs");
        return 1;
    }
    store.value()->stop();
    std::printf("round trip ok: %s\n", read->document.c_str());
    return 0;
}
