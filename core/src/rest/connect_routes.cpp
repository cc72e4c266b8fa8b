// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/rest/connect_routes.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <synergos/core/rest/error_mapping.hpp>
#include <synergos/core/rest/record_store.hpp>

#include "synergos/core/rest/schemas.hpp"
#include "write_queue.hpp"

namespace synergos::core::rest {
namespace {

/// Kinds the alignment of a participant is computed from (its nodes and its data tags).
bool derives_alignment(std::string_view kind) { return kind == "Registration" || kind == "Tag"; }

/// One turn at a time per record for the PUT routes' read-merge-write. A PUT reads the record,
/// merges the body into it and writes the whole document: two PUTs of one record at once would
/// merge into the same old document and the later write would drop the earlier one's fields.
/// The PUT routes, RecordMerger (the prediction route's tag update) and the POSTs that replace a
/// record (registrations, tags) take turns: a replacing POST committed between a PUT's read and
/// its write would be written over.
class KeyedTurns {
public:
    /// Ends a turn (calling it again does nothing): the record's next turn, if any, starts.
    using Done = std::function<void()>;
    using Turn = std::function<void(Done)>;

    /// Runs `turn` now when no turn of `record` is running, else after those before it.
    /// `turn` must call its `Done` once its write has been applied or it failed; a turn that
    /// throws is ended for it.
    void run(std::string record, Turn turn) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto [it, first] = waiting_.try_emplace(record);
            if (!first) {
                it->second.push_back(std::move(turn));
                return;
            }
        }
        start(std::move(record), std::move(turn));
    }

private:
    using Pending = std::deque<std::pair<std::string, Turn>>;

    /// Runs a turn. A turn that ends at once (a 404, or a write refused while stopping) starts
    /// the next one from inside itself: those are queued on the thread's outermost `start`
    /// instead of nesting, so a long queue cannot grow the stack.
    void start(std::string record, Turn turn) {
        thread_local Pending* running = nullptr;
        if (running != nullptr) {
            running->emplace_back(std::move(record), std::move(turn));
            return;
        }
        Pending pending;
        pending.emplace_back(std::move(record), std::move(turn));
        running = &pending;
        while (!pending.empty()) {
            std::string key = std::move(pending.front().first);
            Turn next = std::move(pending.front().second);
            pending.pop_front();
            auto ended = std::make_shared<std::atomic<bool>>(false);
            Done done = [this, key, ended] {
                if (!ended->exchange(true)) {
                    finish(key);
                }
            };
            try {
                next(done);
            } catch (...) {
                done();
            }
        }
        running = nullptr;
    }

    void finish(const std::string& record) {
        Turn next;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto it = waiting_.find(record);
            if (it == waiting_.end()) {
                return;
            }
            if (it->second.empty()) {
                waiting_.erase(it);
                return;
            }
            next = std::move(it->second.front());
            it->second.pop_front();
        }
        start(record, std::move(next));
    }

    std::mutex mutex_;
    /// Records with a running turn, and the turns waiting behind it.
    std::unordered_map<std::string, std::deque<Turn>> waiting_;
};

/// The record's identity for `KeyedTurns`: its kind and key fields.
std::string turn_key(const std::string& kind, const sdk::Key& key) {
    std::string out = kind;
    for (const auto& field : key) {
        out.append(1, '\0').append(field.name).append(1, '\0').append(field.value);
    }
    return out;
}

using Json = nlohmann::json;
using http::Request;
using http::Response;

constexpr const char* kPrefix = "/ttp/connect";
constexpr const char* kEnvelopeParams[] = {"collab_id",      "project_id", "expt_id",     "run_id",
                                           "participant_id", "tag_id",     "alignment_id"};
constexpr const char* kReservedFields[] = {"key",       "doc_id",     "kind",
                                           "relations", "created_at", "link"};

/// One connect resource: how its records are keyed, created and named in messages.
struct Resource {
    const char* kind;
    const char* singular;  ///< method name prefix for items, e.g. "project" -> "project.get"
    const char* plural;    ///< for collections, e.g. "projects" -> "projects.post"
    const char* label;     ///< for 422 messages: "Inappropriate <label> configurations passed!"
    const char* body_id;   ///< the id field of a POST body ("id" for participants), or nullptr
    const char* key_id;    ///< the key field that body_id fills, or nullptr
    std::array<const char*, 4> parents;  ///< kinds that must exist before a create, outermost first
    bool create_replaces;  ///< registration and tag POST: create or replace (the Driver's flow)
    bool raw_post;         ///< experiments POST answers with the raw stored document
};

constexpr Resource kCollaboration{"Collaboration", "collaboration", "collaborations",
                                  "collaboration", "collab_id",     "collab_id",
                                  {nullptr},       false,           false};
constexpr Resource kProject{"Project",    "project",         "projects", "project", "project_id",
                            "project_id", {"Collaboration"}, false,      false};
constexpr Resource kExperiment{"Experiment",
                               "experiment",
                               "experiments",
                               "experiment",
                               "expt_id",
                               "expt_id",
                               {"Collaboration", "Project"},
                               false,
                               true};
constexpr Resource kRun{
    "Run", "run", "runs", "run", "run_id", "run_id", {"Collaboration", "Project", "Experiment"},
    false, false};
constexpr Resource kParticipant{"Participant", "participant", "participants",
                                "participant", "id",          "participant_id",
                                {nullptr},     false,         false};
constexpr Resource kRegistration{"Registration",
                                 "registration",
                                 "registrations",
                                 "registration",
                                 nullptr,
                                 nullptr,
                                 {"Collaboration", "Project", "Participant"},
                                 true,
                                 false};
constexpr Resource kTag{"Tag",
                        "tag",
                        "tags",
                        "tag",
                        nullptr,
                        nullptr,
                        {"Collaboration", "Project", "Participant", "Registration"},
                        true,
                        false};

std::string param_or(const Params& p, const char* name) {
    auto it = p.find(name);
    return it == p.end() ? std::string() : it->second;
}

/// The original's 404 texts (section 5), so clients matching on them keep working.
std::string missing_message(std::string_view kind, const Params& p) {
    const std::string c = param_or(p, "collab_id");
    const std::string pr = param_or(p, "project_id");
    const std::string e = param_or(p, "expt_id");
    const std::string r = param_or(p, "run_id");
    const std::string pt = param_or(p, "participant_id");
    if (kind == "Collaboration") {
        return "Collaboration '" + c + "' does not exist!";
    }
    if (kind == "Project") {
        return "Project '" + pr + "' does not exist!";
    }
    if (kind == "Experiment") {
        return "Experiment '" + e + "' does not exist in Project '" + pr + "'!";
    }
    if (kind == "Run") {
        return "Run '" + r + "' does not exist for Experiment " + e + " under Project '" + pr +
               "'!";
    }
    if (kind == "Participant") {
        return "Participant '" + pt + "' does not exist!";
    }
    if (kind == "Registration") {
        return "Participant '" + pt + "' has not registered for Project '" + pr + "'!";
    }
    if (kind == "Tag") {
        return "Data tags does not exist for participant '" + pt + "' under Project '" + pr + "'!";
    }
    return std::string(kind) + " does not exist!";
}

std::string exists_message(std::string_view kind, const Params& p) {
    const std::string c = param_or(p, "collab_id");
    const std::string pr = param_or(p, "project_id");
    if (kind == "Collaboration") {
        return "Collaboration '" + c + "' already exists!";
    }
    if (kind == "Project") {
        return "Project '" + pr + "' already exists in Collaboration '" + c + "'!";
    }
    if (kind == "Experiment") {
        return "Experiment '" + param_or(p, "expt_id") + "' already exists in Project '" + pr +
               "'!";
    }
    if (kind == "Run") {
        return "Run '" + param_or(p, "run_id") + "' already exists for Experiment " +
               param_or(p, "expt_id") + " under Project '" + pr + "'!";
    }
    if (kind == "Participant") {
        return "Participant '" + param_or(p, "participant_id") + "' already exists!";
    }
    return std::string(kind) + " already exists!";
}

Response ok(int status, const std::string& method, Json params, Json data) {
    return Response::json(status, envelope(status, method, std::move(params), std::move(data)));
}

/// `fields` set in the stored `document` (a shallow merge, as the original's update); a
/// document that is not an object starts empty.
Json merged_document(const std::string& document, const Json& fields) {
    Json doc = Json::parse(document, nullptr, false);
    if (!doc.is_object()) {
        doc = Json::object();
    }
    for (const auto& [field, value] : fields.items()) {
        doc[field] = value;
    }
    return doc;
}

class ConnectApi final : public RecordMerger {
public:
    ConnectApi(sdk::StorageBackend& storage, sdk::Logger& logger,
               std::shared_ptr<WriteMetrics> metrics)
        : store_(storage), logger_(logger), writes_(store_.backend(), std::move(metrics)) {}

    /// 400 naming the first path parameter that is not a valid id.
    static std::optional<Response> check_path(const Request& request) {
        for (const auto& [name, value] : request.params) {
            if (auto problem = id_problem(value)) {
                return Response::field_error(400, "path parameter '" + name + "' " + *problem,
                                             name);
            }
        }
        return std::nullopt;
    }

    /// 404 naming the first of `kinds` that does not exist (keys taken from `params`).
    template <typename Kinds>
    std::optional<Response> check_exists(const Kinds& kinds, const Params& params) {
        for (const char* kind : kinds) {
            if (kind == nullptr) {
                break;
            }
            auto key = RecordStore::make_key(kind, params);
            if (!key) {
                return error_response(key.error());
            }
            auto found = store_.exists(kind, *key);
            if (!found) {
                return error_response(found.error());
            }
            if (!*found) {
                return Response::error(404, missing_message(kind, params));
            }
        }
        return std::nullopt;
    }

    /// The same for a create: only `direct` (the parents no other implies) are read when they
    /// exist; when one is missing, the 404 names the outermost of `all` missing, as before.
    std::optional<Response> check_exists(const std::array<const char*, 4>& all,
                                         const Params& params,
                                         const std::vector<const char*>& direct) {
        auto missing = check_exists(direct, params);
        if (!missing || missing->status != 404) {
            return missing;
        }
        if (auto outer = check_exists(all, params)) {
            return outer;
        }
        return missing;  // re-created in between: the one found missing
    }

    Response list(const Request& request, const char* kind, const std::string& method,
                  const std::vector<const char*>& scope, bool with_params) {
        if (auto bad = check_path(request)) {
            return *bad;
        }
        if (auto missing = check_exists(scope, request.params)) {
            return *missing;
        }
        auto data = store_.read_list(kind, RecordStore::partial_key(kind, request.params));
        if (!data) {
            return error_response(data.error());
        }
        return ok(200, method, with_params ? envelope_params(request) : Json::object(),
                  std::move(*data));
    }

    /// Checks the body of a POST/PUT: reserved fields, and id fields that must match the path.
    /// Removes the key fields (they live in the key) and returns the stored document.
    std::optional<Response> clean_body(const Resource& res, const Params& path, Json& body,
                                       bool is_create) {
        const std::string prefix =
            std::string("Inappropriate ") + res.label + " configurations passed! ";
        for (const char* reserved : kReservedFields) {
            if (body.contains(reserved)) {
                return Response::field_error(
                    422, prefix + "Field '" + reserved + "' is managed by the server", reserved);
            }
        }
        const KindSpec* spec = RecordStore::spec(res.kind);
        for (const auto& field : spec->key_fields) {
            if (res.key_id != nullptr && field == res.key_id && is_create) {
                continue;  // the new record's own id: checked by the caller
            }
            auto it = body.find(field);
            if (it == body.end()) {
                continue;
            }
            const auto p = path.find(field);
            if (p == path.end() || !it->is_string() || *it != p->second) {
                return Response::field_error(
                    422, prefix + "Field '" + field + "' does not match the URL", field);
            }
            body.erase(it);
        }
        return std::nullopt;
    }

    struct PreparedWrite {
        std::vector<sdk::Mutation> batch;  ///< ends with the Insert or Upsert of the record
        Json out_params;
        Params params;
        Json body;  ///< the record's document as written
    };

    /// Validates on the calling (I/O) thread, commits on the writer thread, answers (with the
    /// stored record read back) on the request's thread once the write is durable.
    void create(const Request& request, const Resource& res, const std::string& method,
                http::Responder responder) {
        auto answer = create_batch(request, res, responder);
        if (!answer) {
            return;
        }
        // Every create takes the record's turn, as a PUT and a DELETE do: a PUT that read the
        // record before this write and wrote its merge after it would put the old document
        // back over an answered 201 (for an Insert: the deleted predecessor's document).
        auto shared = std::make_shared<http::Responder>(std::move(responder));
        auto prepared = std::make_shared<PreparedWrite>(std::move(*answer));
        const std::string turn = turn_key(res.kind, prepared->batch.back().key);
        turns_.run(turn, [this, r = &res, method, shared, prepared](KeyedTurns::Done done) {
            if (r->create_replaces && derives_alignment(r->kind)) {
                // Replacing what alignment was computed from drops that participant's
                // alignment (as a DELETE of it would): training refuses until the project is
                // aligned again. Read in the turn, so no PUT changes the record meanwhile.
                const sdk::Mutation& upsert = prepared->batch.back();
                auto current = store_.get(r->kind, upsert.key);
                if (!current || Json::parse(current->document, nullptr, false) != prepared->body) {
                    // Before the Upsert: the answer is the batch's last record.
                    prepared->batch.insert(prepared->batch.end() - 1,
                                           {sdk::WriteMode::DeleteWhere, "Alignment", upsert.key, {}});
                }
            }
            write_create(*r, method, std::move(*shared), std::move(*prepared), std::move(done));
        });
    }

    /// Commits a create's batch and answers it; `done` is called once the write is applied or
    /// refused (the end of a replacing POST's turn).
    void write_create(const Resource& res, const std::string& method, http::Responder responder,
                      PreparedWrite answer, KeyedTurns::Done done) {
        submit(std::move(responder), std::move(answer.batch),
               [this, r = &res, method, out_params = std::move(answer.out_params),
                params = std::move(answer.params), done = std::move(done)](WriteQueue::Outcome written)
                   -> http::Responder::Producer {
                   done();  // applied (or refused): the record's next PUT reads what is stored
                   if (!written) {
                       if (written.error().code == sdk::ErrorCode::NotFound) {
                           // A parent (Require) went after the checks: name the outermost one
                           // missing now, in the original's words, on the request's thread.
                           return [this, r, params, error = written.error()] {
                               if (auto missing = check_exists(r->parents, params)) {
                                   return *missing;
                               }
                               // Re-created since: still the parent that was missing.
                               const auto& parents = direct_parents(*r);
                               return parents.empty()
                                          ? error_response(error)
                                          : Response::error(
                                                404, missing_message(parents.front(), params));
                           };
                       }
                       auto error = written.error().code == sdk::ErrorCode::AlreadyExists
                                        ? Response::error(409, exists_message(r->kind, params))
                                        : error_response(written.error());
                       return [error] { return error; };
                   }
                   return [this, r, method, out_params, record = std::move(written->back())] {
                       if (!r->create_replaces) {
                           // A new record: its batch removed whatever a deleted predecessor
                           // under the same key left behind, so nothing is related to it.
                           const Relations none = RecordStore::no_relations(record.kind);
                           return ok(201, method, out_params,
                                     r->raw_post ? RecordStore::raw(record, &none)
                                                 : RecordStore::marshal(record, &none));
                       }
                       if (r->raw_post) {
                           auto rel = store_.relations_of(record);
                           if (!rel) {
                               return error_response(rel.error());
                           }
                           return ok(201, method, out_params, RecordStore::raw(record, &*rel));
                       }
                       auto data = store_.read(record);
                       if (!data) {
                           return error_response(data.error());
                       }
                       return ok(201, method, out_params, std::move(*data));
                   };
               });
    }

    /// The parents a create must Require: those whose existence no other parent implies. A
    /// parent implies another when deleting the other deletes it (its cascade), since it was
    /// itself created only under the other: a run needs only its experiment.
    static const std::vector<const char*>& direct_parents(const Resource& res) {
        // Derived from constant tables: worked out once per resource, not on every create.
        // Never destroyed: requests still in flight at exit may read it.
        static const auto& table = *new std::map<const Resource*, std::vector<const char*>>([] {
            std::map<const Resource*, std::vector<const char*>> all;
            for (const Resource* r : {&kCollaboration, &kProject, &kExperiment, &kRun, &kParticipant,
                                      &kRegistration, &kTag}) {
                all[r] = implied_by_none(*r);
            }
            return all;
        }());
        return table.at(&res);
    }

    static std::vector<const char*> implied_by_none(const Resource& res) {
        std::vector<const char*> out;
        for (const char* parent : res.parents) {
            if (parent == nullptr) {
                break;
            }
            const KindSpec* spec = RecordStore::spec(parent);
            bool implied = false;
            for (const char* other : res.parents) {
                if (other == nullptr) {
                    break;
                }
                if (spec != nullptr && other != parent &&
                    std::find(spec->cascade.begin(), spec->cascade.end(), other) !=
                        spec->cascade.end()) {
                    implied = true;
                    break;
                }
            }
            if (!implied) {
                out.push_back(parent);
            }
        }
        return out;
    }

    /// The checks of a create and its batch; nullopt when `responder` was answered (an error).
    std::optional<PreparedWrite> create_batch(const Request& request, const Resource& res,
                                              http::Responder& responder) {
        auto fail = [&](Response response) -> std::optional<PreparedWrite> {
            responder.respond(std::move(response));
            return std::nullopt;
        };
        if (auto bad = check_path(request)) {
            return fail(*bad);
        }
        auto parsed = http::parse_json_body(request);
        if (!parsed.ok()) {
            return fail(parsed.error);
        }
        Json body = std::move(*parsed.value);
        Params params = request.params;
        const std::string prefix =
            std::string("Inappropriate ") + res.label + " configurations passed! ";
        if (auto bad = clean_body(res, params, body, true)) {
            return fail(*bad);
        }
        if (res.body_id != nullptr) {
            auto it = body.find(res.body_id);
            if (it == body.end()) {
                return fail(Response::field_error(
                    422, prefix + "Field '" + res.body_id + "' is required", res.body_id));
            }
            if (!it->is_string()) {
                return fail(Response::field_error(
                    422, prefix + "Field '" + res.body_id + "' must be a string", res.body_id));
            }
            if (auto problem = id_problem(it->get<std::string>())) {
                return fail(Response::field_error(
                    422, prefix + "Field '" + res.body_id + "' " + *problem, res.body_id));
            }
            params[res.key_id] = it->get<std::string>();
            if (std::string(res.body_id) != "id") {
                body.erase(it);  // ids move into the key; participants keep `id` as the original
            }
        }
        if (auto invalid = validate_document(res.kind, body)) {
            return fail(Response::field_error(
                422, prefix + "Field '" + invalid->field + "' " + invalid->problem, invalid->field));
        }
        auto key = RecordStore::make_key(res.kind, params);
        if (!key) {
            return fail(error_response(key.error()));
        }
        // The parents no other parent implies: checked here for a quick 404 (a failed Require
        // would fail every write committed with it, which then commit one by one) and again in
        // the write's own transaction, so a parent deleted in between leaves no orphan.
        const auto& parents = direct_parents(res);
        if (auto missing = check_exists(res.parents, params, parents)) {
            return fail(*missing);
        }
        PreparedWrite prepared;
        for (const char* parent : parents) {
            auto parent_key = RecordStore::make_key(parent, params);
            if (!parent_key) {
                return fail(error_response(parent_key.error()));
            }
            prepared.batch.push_back({sdk::WriteMode::Require, parent, std::move(*parent_key), {}});
        }
        const auto mode = res.create_replaces ? sdk::WriteMode::Upsert : sdk::WriteMode::Insert;
        if (mode == sdk::WriteMode::Insert) {
            // A new record starts with nothing under it: whatever a deleted predecessor of the
            // same key left behind (results archived after its DELETE, data from before parents
            // were checked in the write) completes that DELETE's cascade now. If the key is
            // taken, the Insert fails and the batch writes nothing.
            for (const auto& dependent : RecordStore::spec(res.kind)->cascade) {
                prepared.batch.push_back({sdk::WriteMode::DeleteWhere, dependent, *key, {}});
            }
        }
        prepared.batch.push_back({mode, res.kind, *key, body.dump()});
        prepared.body = std::move(body);
        prepared.out_params = envelope_params(request);
        prepared.params = std::move(params);
        return prepared;
    }

    Response get(const Request& request, const Resource& res, const std::string& method) {
        if (auto bad = check_path(request)) {
            return *bad;
        }
        auto key = RecordStore::make_key(res.kind, request.params);
        if (!key) {
            return error_response(key.error());
        }
        if (std::string_view(res.kind) == "Registration") {
            // Its answer also holds its parents' documents: not memoised.
            auto data = store_.read(res.kind, *key);
            if (!data) {
                if (data.error().code == sdk::ErrorCode::NotFound) {
                    return Response::error(404, missing_message(res.kind, request.params));
                }
                return error_response(data.error());
            }
            return ok(200, method, envelope_params(request), std::move(*data));
        }
        auto record = store_.get(res.kind, *key);
        if (!record) {
            if (record.error().code == sdk::ErrorCode::NotFound) {
                return Response::error(404, missing_message(res.kind, request.params));
            }
            return error_response(record.error());
        }
        auto rel = store_.relations_of(*record);
        if (!rel) {
            return error_response(rel.error());
        }
        auto fingerprint = fingerprint_of(*record, *rel);
        // Keyed on the decoded key, not the path: every percent-encoding of one id kept a copy.
        std::string memo_key = method;
        memo_key.push_back('\0');
        memo_key += turn_key(res.kind, *key);
        {
            std::lock_guard<std::mutex> lock(memo_mutex_);
            if (auto it = memo_.find(memo_key);
                it != memo_.end() && it->second.fingerprint == fingerprint) {
                Response response;
                response.body = it->second.body;
                return response;
            }
        }
        Response response =
            ok(200, method, envelope_params(request), RecordStore::marshal(*record, &*rel));
        if (response.body.size() > kMemoMaxBody) {
            return response;
        }
        std::lock_guard<std::mutex> lock(memo_mutex_);
        if (memo_.size() >= kMemoEntries || memo_bytes_ + response.body.size() > kMemoBytes) {
            memo_.clear();
            memo_bytes_ = 0;
        }
        if (auto it = memo_.find(memo_key); it != memo_.end()) {
            memo_bytes_ -= it->second.body.size();
        }
        memo_bytes_ += response.body.size();
        memo_.insert_or_assign(std::move(memo_key), Memo{std::move(fingerprint), response.body});
        return response;
    }

    void update(const Request& request, const Resource& res, const std::string& method,
                http::Responder responder) {
        auto reply = [&](Response response) { responder.respond(std::move(response)); };
        if (auto bad = check_path(request)) {
            return reply(*bad);
        }
        auto parsed = http::parse_json_body(request);
        if (!parsed.ok()) {
            return reply(parsed.error);
        }
        Json body = std::move(*parsed.value);
        if (auto bad = clean_body(res, request.params, body, false)) {
            return reply(*bad);
        }
        const std::string prefix =
            std::string("Inappropriate ") + res.label + " configurations passed! ";
        auto key = RecordStore::make_key(res.kind, request.params);
        if (!key) {
            return reply(error_response(key.error()));
        }
        if (res.body_id != nullptr && std::string(res.body_id) == "id") {
            if (auto it = body.find("id");
                it != body.end() && (!it->is_string() || *it != request.param("participant_id"))) {
                return reply(Response::field_error(422, prefix + "Field 'id' does not match the URL",
                                             "id"));
            }
        }
        // Read, merge and write in the record's turn (see KeyedTurns); the turn may start later
        // on another thread, so it owns what it needs of the request.
        auto shared = std::make_shared<http::Responder>(std::move(responder));
        turns_.run(turn_key(res.kind, *key),
                   [this, r = &res, method, prefix, shared, key = *key, body = std::move(body),
                    out_params = envelope_params(request),
                    params = request.params](KeyedTurns::Done done) mutable {
                       merge_and_write(*r, method, prefix, std::move(*shared), key, body,
                                       std::move(out_params), params, std::move(done));
                   });
    }

    /// The turn of a PUT: merges `body` into the stored record and writes it; calls `done` once
    /// the write is applied or the PUT failed.
    void merge_and_write(const Resource& res, const std::string& method, const std::string& prefix,
                         http::Responder responder, const sdk::Key& key, const Json& body,
                         Json out_params, const Params& params, KeyedTurns::Done done) {
        auto reply = [&](Response response) {
            responder.respond(std::move(response));
            done();
        };
        auto current = store_.get(res.kind, key);
        if (!current) {
            if (current.error().code == sdk::ErrorCode::NotFound) {
                return reply(Response::error(404, missing_message(res.kind, params)));
            }
            return reply(error_response(current.error()));
        }
        const Json doc = merged_document(current->document, body);
        if (auto invalid = validate_document(res.kind, doc)) {
            return reply(Response::field_error(
                422, prefix + "Field '" + invalid->field + "' " + invalid->problem, invalid->field));
        }
        std::vector<sdk::Mutation> batch{{sdk::WriteMode::Update, res.kind, key, doc.dump()}};
        if (derives_alignment(res.kind) && doc != Json::parse(current->document, nullptr, false)) {
            // As for a replacing POST: the participant's alignment no longer holds.
            batch.push_back({sdk::WriteMode::DeleteWhere, "Alignment", key, {}});
        }
        submit(std::move(responder), std::move(batch),
               [this, r = &res, method, out_params = std::move(out_params), params,
                done = std::move(done)](WriteQueue::Outcome written) -> http::Responder::Producer {
                   done();  // applied (or refused): the record's next PUT reads what is stored
                   if (!written) {
                       auto error = written.error().code == sdk::ErrorCode::NotFound
                                        ? Response::error(404, missing_message(r->kind, params))
                                        : error_response(written.error());
                       return [error] { return error; };
                   }
                   return [this, method, out_params, record = std::move(written->front())] {
                       auto data = store_.read(record);
                       if (!data) {
                           return error_response(data.error());
                       }
                       return ok(200, method, out_params, std::move(*data));
                   };
               });
    }

    void remove(const Request& request, const Resource& res, const std::string& method,
                http::Responder responder) {
        auto reply = [&](Response response) { responder.respond(std::move(response)); };
        if (auto bad = check_path(request)) {
            return reply(*bad);
        }
        auto key = RecordStore::make_key(res.kind, request.params);
        if (!key) {
            return reply(error_response(key.error()));
        }
        // In the record's turn, as a PUT and a create: a PUT queued behind this DELETE then
        // reads what it left (404), never the deleted document it would write over a record
        // created again under the key.
        auto shared = std::make_shared<http::Responder>(std::move(responder));
        turns_.run(turn_key(res.kind, *key), [this, r = &res, method, shared, key = *key,
                                              out_params = envelope_params(request),
                                              params = request.params](KeyedTurns::Done done) {
            remove_in_turn(*r, method, std::move(*shared), key, out_params, params, std::move(done));
        });
    }

    void remove_in_turn(const Resource& res, const std::string& method, http::Responder responder,
                        const sdk::Key& key, const Json& out_params, const Params& params,
                        KeyedTurns::Done done) {
        // The answer is the record as it was, with its relations (read before the cascade).
        auto before = store_.read(res.kind, key);
        if (!before) {
            done();
            if (before.error().code == sdk::ErrorCode::NotFound) {
                return responder.respond(Response::error(404, missing_message(res.kind, params)));
            }
            return responder.respond(error_response(before.error()));
        }
        submit(std::move(responder), RecordStore::cascade_delete(res.kind, key),
               [this, r = &res, method, out_params, params, key, done = std::move(done),
                before = std::move(*before)](WriteQueue::Outcome deleted) mutable
               -> http::Responder::Producer {
                   done();  // applied (or refused): the record's next turn reads what is left
                   if (!deleted) {
                       auto error = deleted.error().code == sdk::ErrorCode::NotFound
                                        ? Response::error(404, missing_message(r->kind, params))
                                        : error_response(deleted.error());
                       return [error] { return error; };
                   }
                   logger_.info("record deleted",
                                Json{{"kind", r->kind}, {"key", RecordStore::key_json(key)}}.dump());
                   return [method, out_params, before = std::move(before)] {
                       return ok(200, method, out_params, before);
                   };
               });
    }

    /// See RecordMerger::stop_writes.
    void stop_writes() noexcept override { writes_.stop(); }

    /// See RecordMerger::merge.
    sdk::Status merge(std::vector<RecordPatch> patches, std::chrono::milliseconds timeout) override {
        // Turns are taken in one order (by record), so two merges never wait for each other;
        // one record's patches become one (later fields win).
        std::map<std::string, RecordPatch> by_record;
        for (auto& patch : patches) {
            auto [it, fresh] = by_record.try_emplace(turn_key(patch.kind, patch.key), patch);
            if (!fresh) {
                it->second.fields.update(patch.fields);
            }
        }
        std::vector<std::pair<std::string, RecordPatch>> ordered(std::make_move_iterator(by_record.begin()),
                                                                 std::make_move_iterator(by_record.end()));
        auto op = std::make_shared<MergeOp>(*this, std::move(ordered));
        op->take_turn(0);
        std::unique_lock<std::mutex> lock(op->mutex);
        if (!op->cv.wait_for(lock, timeout, [&] { return op->outcome.has_value(); })) {
            op->abandoned = true;
            return sdk::Status(sdk::ErrorCode::Timeout,
                               "the record update did not finish within " + std::to_string(timeout.count()) +
                                   " ms; it may still be applied");
        }
        return *op->outcome;
    }

    /// Queues `batch` on the writer; once it is durable (or failed), `then` (on the writer
    /// thread) turns the outcome into the producer of the answer, which runs on the request's
    /// thread.
    template <typename Then>
    void submit(http::Responder responder, std::vector<sdk::Mutation> batch, Then then) {
        auto shared = std::make_shared<http::Responder>(std::move(responder));
        writes_.submit(std::move(batch),
                       [shared, then = std::move(then)](WriteQueue::Outcome outcome) mutable {
                           shared->respond_with(then(std::move(outcome)));
                       });
    }

private:
    /// One merge: takes its records' turns one after the other, then reads, merges and writes
    /// them all, and ends the turns once the write is applied (or failed).
    struct MergeOp : std::enable_shared_from_this<MergeOp> {
        MergeOp(ConnectApi& owner, std::vector<std::pair<std::string, RecordPatch>> p)
            : api(owner), patches(std::move(p)) {}

        void take_turn(std::size_t i) {
            if (i == patches.size()) {
                write();
                return;
            }
            auto self = shared_from_this();
            api.turns_.run(patches[i].first, [self, i](KeyedTurns::Done done) {
                {
                    std::lock_guard<std::mutex> lock(self->mutex);
                    self->held.push_back(std::move(done));
                }
                self->take_turn(i + 1);
            });
        }

        void write() {
            // Every path ends in finish: an exception here would otherwise leave the turns taken
            // before this one held for good.
            try {
                write_all();
            } catch (const std::exception& e) {
                finish(sdk::Status(sdk::ErrorCode::Internal, std::string("record update failed: ") + e.what()));
            }
        }

        void write_all() {
            if (is_abandoned()) {  // the caller gave up waiting: nothing is written
                finish(sdk::Status(sdk::ErrorCode::Timeout, "abandoned before it was written"));
                return;
            }
            std::vector<sdk::Mutation> batch;
            for (const auto& [turn, patch] : patches) {
                auto current = api.store_.get(patch.kind, patch.key);
                if (!current) {
                    finish(sdk::Status(current.error()));
                    return;
                }
                batch.push_back({sdk::WriteMode::Update, patch.kind, patch.key,
                                 merged_document(current->document, patch.fields).dump()});
            }
            auto self = shared_from_this();
            api.writes_.submit(std::move(batch), [self](WriteQueue::Outcome written) {
                self->finish(written ? sdk::Status() : sdk::Status(written.error()));
            });
        }

        bool is_abandoned() {
            std::lock_guard<std::mutex> lock(mutex);
            return abandoned;
        }

        void finish(sdk::Status status) {
            std::vector<KeyedTurns::Done> turns;
            {
                std::lock_guard<std::mutex> lock(mutex);
                turns.swap(held);
                outcome = std::move(status);
            }
            cv.notify_all();
            for (auto& done : turns) {
                done();  // the records' next PUTs read what is stored now
            }
        }

        ConnectApi& api;
        std::vector<std::pair<std::string, RecordPatch>> patches;  ///< by turn key, ascending
        std::mutex mutex;
        std::condition_variable cv;
        std::optional<sdk::Status> outcome;
        bool abandoned = false;
        std::vector<KeyedTurns::Done> held;
    };

    /// What a GET answer is made of: for the record and each related record, its doc_id,
    /// version and update time (an update bumps the version; a new record gets a new doc_id),
    /// and the size of each relation list. Equal fingerprints: byte-identical answers.
    static std::vector<std::int64_t> fingerprint_of(const sdk::Record& record,
                                                    const Relations& relations) {
        std::vector<std::int64_t> out{record.doc_id, record.version, record.updated_at_ms};
        for (const auto& [kind, records] : relations) {
            out.push_back(static_cast<std::int64_t>(records.size()));
            for (const auto& r : records) {
                out.insert(out.end(), {r.doc_id, r.version, r.updated_at_ms});
            }
        }
        return out;
    }

    /// The last answer per GET path, reused while its fingerprint holds: the record and its
    /// relations are still read (so the answer is as fresh as a read), only the marshalling
    /// and JSON serialisation are skipped.
    struct Memo {
        std::vector<std::int64_t> fingerprint;
        std::string body;
    };
    static constexpr std::size_t kMemoEntries = 1024;
    /// Bodies above this are not kept, and all kept bodies stay under kMemoBytes: the count
    /// alone let 1024 large records hold their answers (a 50 MB block each) for good.
    static constexpr std::size_t kMemoMaxBody = std::size_t{1} << 20;
    static constexpr std::size_t kMemoBytes = std::size_t{64} << 20;

    RecordStore store_;
    sdk::Logger& logger_;
    std::mutex memo_mutex_;
    std::unordered_map<std::string, Memo> memo_;
    std::size_t memo_bytes_ = 0;  ///< the bodies in memo_, under memo_mutex_
    KeyedTurns turns_;
    WriteQueue writes_;  // last: its thread stops before the members above
};

/// Registers GET/POST on a collection (both slash spellings) and GET/PUT/DELETE on its items.
void add_resource(http::Router& router, const std::shared_ptr<ConnectApi>& api, const Resource& res,
                  const std::string& collection, const std::string& item,
                  const std::vector<const char*>& list_scope) {
    const std::string plural = res.plural;
    const std::string singular = res.singular;
    const Resource* r = &res;
    // Reads run inline on the I/O thread (SQLite WAL readers never wait for writers); writes
    // are checked there too, then committed by the writer thread (one commit for every write
    // queued meanwhile), which sends each answer back to its connection: no thread waits.
    router.add(
        "GET", collection + "/",
        [api, r, plural, list_scope](const Request& req) {
            return api->list(req, r->kind, plural + ".get", list_scope, true);
        },
        http::Execution::Inline);
    router.add_async("POST", collection + "/",
                     [api, r, plural](const Request& req, http::Responder responder) {
                         api->create(req, *r, plural + ".post", std::move(responder));
                     });
    router.add(
        "GET", item,
        [api, r, singular](const Request& req) { return api->get(req, *r, singular + ".get"); },
        http::Execution::Inline);
    router.add_async("PUT", item, [api, r, singular](const Request& req, http::Responder responder) {
        api->update(req, *r, singular + ".put", std::move(responder));
    });
    router.add_async("DELETE", item,
                     [api, r, singular](const Request& req, http::Responder responder) {
                         api->remove(req, *r, singular + ".delete", std::move(responder));
                     });
}

/// Registers GET/POST/PUT/DELETE on a singular resource (registration, tags).
void add_singular(http::Router& router, const std::shared_ptr<ConnectApi>& api, const Resource& res,
                  const std::string& path) {
    const std::string singular = res.singular;
    const Resource* r = &res;
    router.add(
        "GET", path,
        [api, r, singular](const Request& req) { return api->get(req, *r, singular + ".get"); },
        http::Execution::Inline);
    router.add_async("POST", path, [api, r, singular](const Request& req, http::Responder responder) {
        api->create(req, *r, singular + ".post", std::move(responder));
    });
    router.add_async("PUT", path, [api, r, singular](const Request& req, http::Responder responder) {
        api->update(req, *r, singular + ".put", std::move(responder));
    });
    router.add_async("DELETE", path,
                     [api, r, singular](const Request& req, http::Responder responder) {
                         api->remove(req, *r, singular + ".delete", std::move(responder));
                     });
}

void add_registration_listing(http::Router& router, const std::shared_ptr<ConnectApi>& api,
                              const std::string& path, std::vector<const char*> scope) {
    router.add(
        "GET", path,
        [api, scope](const Request& req) {
            return api->list(req, "Registration", "registrations.get", scope, false);
        },
        http::Execution::Inline);
}

}  // namespace

nlohmann::json envelope(int status, const std::string& method, nlohmann::json params,
                        nlohmann::json data) {
    return Json{{"apiVersion", kApiVersion},
                {"success", 1},
                {"status", status},
                {"method", method},
                {"params", std::move(params)},
                {"data", std::move(data)}};
}

nlohmann::json envelope_params(const http::Request& request) {
    Json out = Json::object();
    for (const char* name : kEnvelopeParams) {
        if (auto it = request.params.find(name); it != request.params.end()) {
            out[name] = it->second;
        }
    }
    return out;
}

std::shared_ptr<RecordMerger> register_connect_routes(http::Router& router,
                                                      sdk::StorageBackend& storage,
                                                      sdk::Logger& logger,
                                                      std::shared_ptr<WriteMetrics> metrics) {
    auto api = std::make_shared<ConnectApi>(storage, logger, std::move(metrics));
    const std::string p = kPrefix;
    const std::string collab = p + "/collaborations/{collab_id}";
    const std::string project = collab + "/projects/{project_id}";
    const std::string experiment = project + "/experiments/{expt_id}";
    const std::string participant = p + "/participants/{participant_id}";

    add_resource(router, api, kCollaboration, p + "/collaborations", collab, {});
    add_resource(router, api, kProject, collab + "/projects", project, {"Collaboration"});
    add_resource(router, api, kExperiment, project + "/experiments", experiment,
                 {"Collaboration", "Project"});
    add_resource(router, api, kRun, experiment + "/runs", experiment + "/runs/{run_id}",
                 {"Collaboration", "Project", "Experiment"});
    add_resource(router, api, kParticipant, p + "/participants", participant, {});

    // Registration and tags, under the project and (alias) under the participant.
    for (const std::string& base :
         {project + "/participants/{participant_id}/registration",
          participant + "/collaborations/{collab_id}/projects/{project_id}/registration"}) {
        add_singular(router, api, kRegistration, base);
        add_singular(router, api, kTag, base + "/tags");
    }

    // The five registration listings.
    add_registration_listing(router, api, collab + "/registrations", {"Collaboration"});
    add_registration_listing(router, api, collab + "/participants/{participant_id}/registrations",
                             {"Collaboration", "Participant"});
    add_registration_listing(router, api, project + "/registrations", {"Collaboration", "Project"});
    add_registration_listing(router, api, participant + "/registrations", {"Participant"});
    add_registration_listing(router, api, participant + "/collaborations/{collab_id}/registrations",
                             {"Participant", "Collaboration"});
    return api;
}

}  // namespace synergos::core::rest
