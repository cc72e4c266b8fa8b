// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/roles/director_routes.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "synergos/core/rest/connect_routes.hpp"
#include "synergos/core/rest/error_mapping.hpp"
#include "synergos/core/rest/record_store.hpp"
#include "synergos/core/rest/schemas.hpp"

namespace synergos::core::roles {

using nlohmann::json;
using http::Request;
using http::Response;

namespace {

constexpr const char* kTrain = "/ttp/train/collaborations/{collab_id}/projects/{project_id}";
constexpr const char* kEvaluate = "/ttp/evaluate/collaborations/{collab_id}/projects/{project_id}";
constexpr const char* kPredict = "/ttp/evaluate/participants/{participant_id}/collaborations/{collab_id}/predictions";
constexpr const char* kBoolFields[] = {"auto_align", "auto_fix", "dockerised", "verbose", "log_msgs"};

/// Which module (plugin) runs a process, for "module not active" messages.
const char* module_of(const std::string& process) {
    return process == "preprocess" ? "align" : process.c_str();
}

/// An error carried as an HTTP response (routes return early with it).
struct Fail {
    Response response;
};

Response ok(int status, const std::string& method, const Request& req, json data, const json* jobs = nullptr) {
    json params = rest::envelope_params(req);
    if (auto job = req.params.find("job_id"); job != req.params.end()) {
        params["job_id"] = job->second;  // the job routes name their job as the others their records
    }
    json body = rest::envelope(status, method, std::move(params), std::move(data));
    if (jobs != nullptr) {
        body["jobs"] = *jobs;
    }
    return Response::json(status, body);
}

class Routes : public std::enable_shared_from_this<Routes> {
public:
    explicit Routes(DirectorRoutesDeps deps) : d_(deps), store_(deps.storage) {}

    void add(http::Router& r) {
        // Each handler holds the routes object, so it lives as long as the router does.
        auto self = shared_from_this();
        auto bind = [self](Response (Routes::*fn)(const Request&)) {
            return [self, fn](const Request& req) {
                try {
                    return ((*self).*fn)(req);
                } catch (const Fail& f) {
                    return f.response;
                }
            };
        };
        const std::string train = kTrain;
        const std::string eval = kEvaluate;
        const std::string pred = kPredict;
        // Before the models routes: `/models/{expt_id}/{run_id}` would take "optimizations".
        r.add("GET", train + "/models/{expt_id}/optimizations/", bind(&Routes::get_optimizations));
        r.add("POST", train + "/models/{expt_id}/optimizations/", bind(&Routes::post_optimizations));
        r.add("GET", train + "/alignments/", bind(&Routes::get_alignments));
        r.add("POST", train + "/alignments/", bind(&Routes::post_alignments));
        for (const std::string suffix : {"/models/", "/models/{expt_id}", "/models/{expt_id}/{run_id}"}) {
            r.add("GET", train + suffix, bind(&Routes::get_models));
            r.add("POST", train + suffix, bind(&Routes::post_models));
        }
        for (const std::string suffix : {"/validations/", "/validations/{expt_id}", "/validations/{expt_id}/{run_id}",
                                         "/validations/{expt_id}/{run_id}/{participant_id}"}) {
            r.add("GET", eval + suffix, bind(&Routes::get_validations));
            r.add("POST", eval + suffix, bind(&Routes::post_validations));
        }
        for (const std::string suffix : {"/", "/{project_id}", "/{project_id}/{expt_id}", "/{project_id}/{expt_id}/{run_id}"}) {
            r.add("GET", pred + suffix, bind(&Routes::get_predictions));
            r.add("POST", pred + suffix, bind(&Routes::post_predictions));
        }
        r.add("GET", "/v1/jobs/", bind(&Routes::list_jobs));
        r.add("GET", "/v1/jobs/{job_id}", bind(&Routes::get_job));
        r.add("DELETE", "/v1/jobs/{job_id}", bind(&Routes::cancel_job));
        r.add("POST", "/v1/jobs/{job_id}/cancel", bind(&Routes::cancel_job));
    }

private:
    // ---- helpers -------------------------------------------------------------------------

    static Fail fail(int status, const std::string& message) { return Fail{Response::error(status, message)}; }
    static Fail fail(const sdk::Error& e) { return Fail{rest::error_response(e)}; }

    template <typename T>
    T must(sdk::Result<T> r) {
        if (!r) {
            throw fail(r.error());
        }
        return std::move(*r);
    }

    /// The POST body as an object (an empty body counts as `{}`); booleans checked by name.
    json body_of(const Request& req) {
        if (req.body.empty()) {
            return json::object();
        }
        auto parsed = http::parse_json_body(req, true);
        if (!parsed.ok()) {
            throw Fail{parsed.error};
        }
        json body = *parsed.value;
        for (const char* f : kBoolFields) {
            if (body.contains(f) && !body[f].is_boolean()) {
                throw Fail{Response::field_error(422, std::string("field '") + f + "' must be a boolean", f)};
            }
        }
        return body;
    }

    json document(const sdk::Record& rec) {
        json doc = json::parse(rec.document, nullptr, false);
        return doc.is_object() ? doc : json::object();
    }

    void require_module(const std::string& process) {
        if (!d_.jobs.has_function(process)) {
            throw fail(501, std::string("the '") + module_of(process) + "' module is not active on this director (add '" +
                                module_of(process) + "' to ttp.functions in its config)");
        }
    }

    sdk::Record require_record(const char* kind, const sdk::Key& key, const std::string& message) {
        auto rec = store_.get(kind, key);
        if (!rec) {
            if (rec.error().code == sdk::ErrorCode::NotFound) {
                throw fail(404, message);
            }
            throw fail(rec.error());
        }
        return *rec;
    }

    json project_doc(const std::string& c, const std::string& p) {
        require_record("Collaboration", {{"collab_id", c}}, "Collaboration '" + c + "' does not exist!");
        return document(require_record("Project", {{"collab_id", c}, {"project_id", p}},
                                       "Project '" + p + "' does not exist in Collaboration '" + c + "'!"));
    }

    /// Grids and tags of a project: grid i holds every registered participant's node_i.
    struct Cluster {
        json grids = json::array();
        json tags = json::object();
        std::vector<std::string> participants;
        /// Per participant, its registration and tag documents as stored: what an alignment is
        /// computed from. The alignment keeps them, and a use checks them against the store.
        json basis = json::object();
    };

    Cluster cluster_of(const std::string& c, const std::string& p) {
        auto regs = must(store_.list("Registration", {{"collab_id", c}, {"project_id", p}}));
        if (regs.empty()) {
            throw fail(409, "no participant is registered for Project '" + p +
                                "' (POST .../participants/<id>/registration first)");
        }
        std::sort(regs.begin(), regs.end(), [](const sdk::Record& a, const sdk::Record& b) {
            return rest::RecordStore::key_json(a.key).value("participant_id", "") <
                   rest::RecordStore::key_json(b.key).value("participant_id", "");
        });
        Cluster cl;
        int grids = -1;
        std::vector<json> docs;
        for (const auto& reg : regs) {
            const std::string pid = rest::RecordStore::key_json(reg.key).value("participant_id", "");
            json doc = document(reg);
            const int n = doc.contains("n_count") && doc["n_count"].is_number_integer() ? doc["n_count"].get<int>() : 1;
            grids = grids < 0 ? n : std::min(grids, n);
            cl.participants.push_back(pid);
            cl.basis[pid] = {{"registration", doc}};
            docs.push_back(std::move(doc));
        }
        if (grids <= 0) {
            throw fail(422, "registrations of Project '" + p + "' define no grid (n_count must be at least 1)");
        }
        for (int g = 0; g < grids; ++g) {
            json nodes = json::array();
            for (std::size_t i = 0; i < docs.size(); ++i) {
                const std::string key = "node_" + std::to_string(g);
                const json node = docs[i].value(key, json::object());
                const std::string host = node.contains("host") && node["host"].is_string() ? node["host"].get<std::string>() : "";
                int port = 0;
                for (const char* f : {"f_port", "port"}) {
                    if (port == 0 && node.contains(f) && node[f].is_number_integer()) {
                        port = node[f].get<int>();
                    }
                }
                if (host.empty() || port <= 0) {
                    throw fail(422, "registration of participant '" + cl.participants[i] + "' in Project '" + p +
                                        "' has no usable " + key + " (host and f_port are required)");
                }
                nodes.push_back({{"participant_id", cl.participants[i]},
                                 {"host", host},
                                 {"port", port},
                                 {"keys", {{"collab_id", c}, {"project_id", p}, {"participant_id", cl.participants[i]}}},
                                 {"rest", {{"host", host}, {"port", port}}}});
            }
            cl.grids.push_back(std::move(nodes));
        }
        for (const auto& tag : must(store_.list("Tag", {{"collab_id", c}, {"project_id", p}}))) {
            const std::string pid = rest::RecordStore::key_json(tag.key).value("participant_id", "");
            json doc = document(tag);
            cl.tags[pid] = {{"train", doc.value("train", json::array())},
                            {"evaluate", doc.value("evaluate", json::array())},
                            {"predict", doc.value("predict", json::array())}};
            if (cl.basis.contains(pid)) {
                cl.basis[pid]["tags"] = without_predict(std::move(doc));
            }
        }
        for (const auto& pid : cl.participants) {
            if (!cl.tags.contains(pid)) {
                throw fail(409, "participant '" + pid + "' has no data tags for Project '" + p +
                                    "' (POST .../registration/tags first)");
            }
        }
        return cl;
    }

    /// The Tag fields an alignment depends on: all but `predict`. A predictions POST brings new
    /// predict tags, which are aligned against the training superset when its job runs; with
    /// them in the basis, every such POST found the alignment out of date (409) and left it so.
    static json without_predict(json tag_doc) {
        if (tag_doc.is_object()) {
            tag_doc.erase("predict");
        }
        return tag_doc;
    }
    /// An alignment's stored basis as compared today (those archived before kept `predict`).
    static json basis_without_predict(json basis) {
        if (basis.is_object() && basis.contains("tags")) {
            basis["tags"] = without_predict(std::move(basis["tags"]));
        }
        return basis;
    }

    /// The feature/label superset found by alignment, or null (auto_align off). Every registered
    /// participant needs its alignment record: one is deleted with its registration or tags
    /// (they changed, so the superset no longer describes the data), and a participant that
    /// registered after the alignment has none. Training on the others' stale superset would
    /// silently mis-shape its data.
    json superset_of(const std::string& c, const std::string& p, const Cluster& cl, bool auto_align) {
        if (!auto_align) {
            return nullptr;
        }
        const std::string again = "POST /ttp/train/collaborations/" + c + "/projects/" + p +
                                  "/alignments first, or send auto_align: false";
        json superset;
        std::set<std::string> aligned;
        for (const auto& a : must(store_.list("Alignment", {{"collab_id", c}, {"project_id", p}}))) {
            json doc = document(a);
            const std::string pid = rest::RecordStore::key_json(a.key).value("participant_id", "");
            // A registration or tag change deletes the alignment with it, but an alignment job
            // that read the old ones may archive after that change: its basis tells. (Alignments
            // archived before bases were kept have none.)
            if (doc.contains("basis") && cl.basis.contains(pid) &&
                basis_without_predict(doc["basis"]) != cl.basis[pid]) {
                throw fail(409, "the alignment of participant '" + pid + "' in Project '" + p +
                                    "' was computed from a registration or tags that have changed since: " +
                                    again);
            }
            if (doc.contains("superset") && doc["superset"].is_object()) {
                aligned.insert(pid);
                if (superset.is_null()) {
                    superset = doc["superset"];
                }
            }
        }
        if (superset.is_null()) {
            throw fail(409, "no alignment exists for Project '" + p + "': " + again);
        }
        for (const auto& pid : cl.participants) {
            if (aligned.count(pid) == 0) {
                throw fail(409, "participant '" + pid + "' has no alignment for Project '" + p +
                                    "' (it registered, or its registration or tags changed, after the "
                                    "last alignment): " + again);
            }
        }
        return superset;
    }

    /// (experiment, run) pairs of a project, narrowed by the path's expt_id / run_id.
    std::vector<std::pair<sdk::Record, sdk::Record>> combinations(const std::string& c, const std::string& p,
                                                                  const std::string& e, const std::string& r) {
        sdk::Key ematch{{"collab_id", c}, {"project_id", p}};
        if (!e.empty()) {
            require_record("Experiment", {{"collab_id", c}, {"project_id", p}, {"expt_id", e}},
                           "Experiment '" + e + "' does not exist in Project '" + p + "'!");
            ematch.push_back({"expt_id", e});
        }
        if (!r.empty()) {
            require_record("Run", {{"collab_id", c}, {"project_id", p}, {"expt_id", e}, {"run_id", r}},
                           "Run '" + r + "' does not exist for Experiment '" + e + "' under Project '" + p + "'!");
        }
        std::vector<std::pair<sdk::Record, sdk::Record>> out;
        for (const auto& expt : must(store_.list("Experiment", ematch))) {
            const std::string eid = rest::RecordStore::key_json(expt.key).value("expt_id", "");
            sdk::Key rmatch{{"collab_id", c}, {"project_id", p}, {"expt_id", eid}};
            if (!r.empty()) {
                rmatch.push_back({"run_id", r});
            }
            for (const auto& run : must(store_.list("Run", rmatch))) {
                out.emplace_back(expt, run);
            }
        }
        if (out.empty()) {
            throw fail(409, "Project '" + p + "' has no experiment with a run to work on");
        }
        return out;
    }

    jobs::JobSpec combination_job(const std::string& process, const std::string& c, const std::string& p,
                                  const json& project, const sdk::Record& expt, const sdk::Record& run,
                                  const Cluster& cl, const json& superset, const json& body) {
        const json ekey = rest::RecordStore::key_json(expt.key);
        const json rkey = rest::RecordStore::key_json(run.key);
        jobs::JobSpec s;
        s.process = process;
        s.filters = {c, p, ekey.value("expt_id", ""), rkey.value("run_id", "")};
        s.keys = rkey;
        s.grids = cl.grids;
        json experiment = document(expt);
        experiment["expt_id"] = ekey.value("expt_id", "");
        json run_doc = document(run);
        s.parameters = {{"action", project.value("action", "classify")},
                        {"experiment", experiment},
                        {"run", run_doc},
                        {"alignment", superset},
                        {"tags", cl.tags},
                        {"auto_align", body.value("auto_align", true)}};
        if (d_.model != nullptr && experiment.contains("model")) {
            std::vector<std::int64_t> shape;
            if (superset.is_object() && superset.contains("X") && superset["X"].is_array() && !superset["X"].empty()) {
                shape.push_back(static_cast<std::int64_t>(superset["X"].size()));
            }
            if (auto st = d_.model->validate(experiment["model"].dump(), run_doc.dump(), shape); !st) {
                throw Fail{Response::field_error(422,
                                                 "experiment '" + experiment["expt_id"].get<std::string>() + "', run '" +
                                                     rkey.value("run_id", "") + "': " + st.message(),
                                                 "model")};
            }
        }
        return s;
    }

    json submit(std::vector<jobs::JobSpec> specs) {
        auto submitted = d_.jobs.submit(std::move(specs));
        if (!submitted) {
            throw fail(sdk::Error{sdk::ErrorCode::Unavailable, "jobs could not be queued: " + submitted.error().message});
        }
        // As GET /v1/jobs/{id} shows them now (e.g. no TTP connected for their grid).
        d_.jobs.explain(*submitted);
        json out = json::array();
        for (const auto& j : *submitted) {
            out.push_back(j.to_api());
        }
        return out;
    }

    Response listing(const Request& req, const char* kind, const sdk::Key& match, const std::string& method,
                     const std::string& none, const char* as_kind = nullptr) {
        auto data = must(store_.read_list(kind, match));
        if (!data.is_array() || data.empty()) {
            throw fail(404, none);
        }
        if (as_kind != nullptr) {
            for (auto& rec : data) {
                rec["kind"] = as_kind;
            }
        }
        return ok(200, method, req, std::move(data));
    }

    sdk::Key match_of(const Request& req, std::initializer_list<const char*> names) {
        sdk::Key key;
        for (const char* n : names) {
            const std::string& v = req.param(n);
            if (!v.empty()) {
                key.push_back({n, v});
            }
        }
        return key;
    }

    // ---- /ttp/train ----------------------------------------------------------------------

    Response get_alignments(const Request& req) {
        const auto& c = req.param("collab_id");
        const auto& p = req.param("project_id");
        return listing(req, "Alignment", {{"collab_id", c}, {"project_id", p}}, "alignments.get",
                       "MFA has not been performed for Project '" + p + "'!");
    }

    Response post_alignments(const Request& req) {
        require_module("preprocess");
        const auto& c = req.param("collab_id");
        const auto& p = req.param("project_id");
        json body = body_of(req);
        json project = project_doc(c, p);
        Cluster cl = cluster_of(c, p);
        json experiments = json::array();
        for (const auto& e : must(store_.list("Experiment", {{"collab_id", c}, {"project_id", p}}))) {
            json doc = document(e);
            doc["expt_id"] = rest::RecordStore::key_json(e.key).value("expt_id", "");
            experiments.push_back(std::move(doc));
        }
        jobs::JobSpec s;
        s.process = "preprocess";
        s.filters = {c, p};
        s.keys = {{"collab_id", c}, {"project_id", p}};
        s.grids = cl.grids;
        s.parameters = {{"action", project.value("action", "classify")}, {"tags", cl.tags},
                        {"basis", cl.basis},
                        {"experiments", experiments}, {"auto_align", body.value("auto_align", true)},
                        {"auto_fix", body.value("auto_fix", true)}};
        json jobs = submit({std::move(s)});
        return ok(201, "alignments.post", req, json::array(), &jobs);
    }

    Response get_models(const Request& req) {
        return listing(req, "Model", match_of(req, {"collab_id", "project_id", "expt_id", "run_id"}), "models.get",
                       "Models does not exist for specified keyword filters!");
    }

    /// 409 when a run of `runs` has a training job that has not ended: a second one would
    /// train the same run at once, each removing the other's checkpoints, and the model
    /// archived last would win. Nothing is submitted.
    void refuse_runs_in_training(const std::string& c, const std::string& p, const std::vector<jobs::JobSpec>& specs) {
        std::set<std::pair<std::string, std::string>> wanted;
        for (const auto& s : specs) {
            wanted.emplace(s.keys.value("expt_id", ""), s.keys.value("run_id", ""));
        }
        for (const auto& job : must(d_.jobs.list({"", "train", c, p}, /*explained=*/false))) {
            if (job.is_terminal()) {
                continue;
            }
            const std::pair<std::string, std::string> run{job.keys.value("expt_id", ""), job.keys.value("run_id", "")};
            if (wanted.count(run) != 0) {
                throw fail(409, "Run '" + run.second + "' of Experiment '" + run.first + "' is being trained by job '" +
                                    job.job_id + "' (" + job.state + "); wait for it to end or cancel it "
                                    "(POST /v1/jobs/" + job.job_id + "/cancel) before training the run again");
            }
        }
    }

    Response post_models(const Request& req) {
        require_module("train");
        const auto& c = req.param("collab_id");
        const auto& p = req.param("project_id");
        json body = body_of(req);
        json project = project_doc(c, p);
        Cluster cl = cluster_of(c, p);
        json superset = superset_of(c, p, cl, body.value("auto_align", true));
        std::vector<jobs::JobSpec> specs;
        for (const auto& [expt, run] : combinations(c, p, req.param("expt_id"), req.param("run_id"))) {
            specs.push_back(combination_job("train", c, p, project, expt, run, cl, superset, body));
        }
        // Checked and submitted under one lock: two POSTs at once cannot both pass the check.
        std::lock_guard<std::mutex> training(train_submit_mutex_);
        refuse_runs_in_training(c, p, specs);
        json jobs = submit(std::move(specs));
        return ok(200, "models.post", req, json::array(), &jobs);
    }

    // ---- optimizations ---------------------------------------------------------------------

    /// Validation records of the optimisation runs of an experiment, as the original lists them.
    json optimization_trials(const std::string& c, const std::string& p, const std::string& e) {
        json all = must(store_.read_list("Validation", {{"collab_id", c}, {"project_id", p}, {"expt_id", e}}));
        json out = json::array();
        for (auto& rec : all) {
            const json key = rec.value("key", json::object());
            if (key.value("run_id", "").rfind("optim_run_", 0) == 0) {
                rec["kind"] = "Optimization";
                out.push_back(std::move(rec));
            }
        }
        return out;
    }

    /// The searches of an experiment: finished ones from their Optimization records, running
    /// ones from their jobs (progress so far), oldest first.
    json optimization_searches(const std::string& c, const std::string& p, const std::string& e) {
        json out = json::array();
        std::set<std::string> archived;
        auto records = must(store_.list("Optimization", {{"collab_id", c}, {"project_id", p}, {"expt_id", e}}));
        std::sort(records.begin(), records.end(),
                  [](const sdk::Record& a, const sdk::Record& b) { return a.doc_id < b.doc_id; });
        for (const auto& rec : records) {
            json doc = document(rec);
            doc["state"] = "succeeded";
            archived.insert(doc.value("job_id", ""));
            out.push_back(std::move(doc));
        }
        for (const auto& job : must(d_.jobs.list({"", "optimize", c, p}))) {
            if (archived.count(job.job_id) || job.keys.value("expt_id", "") != e) {
                continue;
            }
            json doc = job.progress.is_object() ? job.progress : json::object();
            doc["job_id"] = job.job_id;
            doc["state"] = job.state;
            if (!job.reason.empty()) {
                doc["reason"] = job.reason;
            }
            out.push_back(std::move(doc));
        }
        return out;
    }

    Response optimizations_answer(const Request& req, int status, const std::string& method, json data,
                                  const json* jobs) {
        const auto& c = req.param("collab_id");
        const auto& p = req.param("project_id");
        const auto& e = req.param("expt_id");
        json searches = optimization_searches(c, p, e);
        json best = nullptr;
        for (const auto& s : searches) {
            if (s.contains("best") && s["best"].is_object()) {
                best = s["best"];  // the latest search that has one
            }
        }
        Response r = ok(status, method, req, std::move(data), jobs);
        json body = json::parse(r.body);
        body["optimizations"] = std::move(searches);
        body["best"] = std::move(best);
        return Response::json(status, body);
    }

    Response get_optimizations(const Request& req) {
        const auto& c = req.param("collab_id");
        const auto& p = req.param("project_id");
        const auto& e = req.param("expt_id");
        json data = optimization_trials(c, p, e);
        if (data.empty() && optimization_searches(c, p, e).empty()) {
            throw fail(404, "Optimizations do not exist for specified keyword filters!");
        }
        return optimizations_answer(req, 200, "optimizations.get", std::move(data), nullptr);
    }

    /// The search request's fields the director checks before queuing (the optimize function
    /// checks the search space entries themselves and fails the job naming the entry).
    static void check_search_request(const json& body) {
        auto field = [](const std::string& name, const std::string& what) {
            return Fail{Response::field_error(422, "field '" + name + "' " + what, name)};
        };
        if (!body.contains("search_space") || !body["search_space"].is_object() || body["search_space"].empty()) {
            throw field("search_space", "is required: an object of {\"_type\", \"_value\"} entries (ranges.json)");
        }
        if (!body.contains("metric") || !body["metric"].is_string() || body["metric"].get<std::string>().empty()) {
            throw field("metric", "is required: the validation statistic to optimise (e.g. accuracy, R2)");
        }
        const json mode = body.value("optimize_mode", json(nullptr));
        if (mode != "max" && mode != "min") {
            throw field("optimize_mode", "is required: \"max\" or \"min\"");
        }
        if (body.contains("backend") && body["backend"] != "tune") {
            throw Fail{Response::field_error(417, "Specified backend '" + body["backend"].dump() + "' is not supported!",
                                             "backend")};
        }
        if (body.contains("max_trial_num") &&
            (!body["max_trial_num"].is_number_integer() || body["max_trial_num"].get<std::int64_t>() < 1 ||
             body["max_trial_num"].get<std::int64_t>() > 1000)) {
            throw field("max_trial_num", "must be an integer from 1 to 1000");
        }
        if (body.contains("strategy") && body["strategy"] != "random" && body["strategy"] != "grid") {
            throw field("strategy", "must be \"random\" or \"grid\"");
        }
        if (body.contains("searcher") && body["searcher"] != "BasicVariantGenerator" && body["searcher"] != "random" &&
            body["searcher"] != "grid") {
            throw field("searcher", "must be \"BasicVariantGenerator\" (random), \"random\" or \"grid\"");
        }
        if (body.contains("seed") && !body["seed"].is_number_integer()) {
            throw field("seed", "must be an integer");
        }
        if (body.contains("run") && !body["run"].is_object()) {
            throw field("run", "must be an object of run settings shared by every trial");
        }
        if (body.contains("max_exec_duration") && !body["max_exec_duration"].is_string()) {
            throw field("max_exec_duration", "must be a string like \"1h 30m\"");
        }
    }

    Response post_optimizations(const Request& req) {
        require_module("optimize");
        require_module("train");
        require_module("validate");
        const auto& c = req.param("collab_id");
        const auto& p = req.param("project_id");
        const auto& e = req.param("expt_id");
        json body = body_of(req);
        json project = project_doc(c, p);
        sdk::Record expt = require_record("Experiment", {{"collab_id", c}, {"project_id", p}, {"expt_id", e}},
                                          "Experiment '" + e + "' does not exist in Project '" + p + "'!");
        check_search_request(body);
        Cluster cl = cluster_of(c, p);
        json superset = superset_of(c, p, cl, body.value("auto_align", true));
        json experiment = document(expt);
        experiment["expt_id"] = e;
        jobs::JobSpec s;
        s.process = "optimize";
        s.filters = {c, p, e};
        s.keys = {{"collab_id", c}, {"project_id", p}, {"expt_id", e}};
        s.grids = cl.grids;
        s.parameters = {{"action", project.value("action", "classify")},
                        {"experiment", experiment},
                        {"alignment", superset},
                        {"tags", cl.tags},
                        {"auto_align", body.value("auto_align", true)}};
        for (const char* f : {"search_space", "metric", "optimize_mode", "strategy", "searcher", "max_trial_num",
                              "seed", "run", "max_exec_duration"}) {
            if (body.contains(f)) {
                s.parameters[f] = body[f];
            }
        }
        json jobs = submit({std::move(s)});
        return optimizations_answer(req, 200, "optimizations.post", optimization_trials(c, p, e), &jobs);
    }

    // ---- /ttp/evaluate -------------------------------------------------------------------

    Response get_validations(const Request& req) {
        return listing(req, "Validation",
                       match_of(req, {"participant_id", "collab_id", "project_id", "expt_id", "run_id"}),
                       "validations.get", "Validations do not exist for specified keyword filters!");
    }

    void require_trained(const std::string& c, const std::string& p, const sdk::Record& run) {
        const json rkey = rest::RecordStore::key_json(run.key);
        auto model = store_.get("Model", {{"collab_id", c}, {"project_id", p}, {"expt_id", rkey.value("expt_id", "")},
                                          {"run_id", rkey.value("run_id", "")}});
        if (!model) {
            throw fail(409, "Run '" + rkey.value("run_id", "") + "' of Experiment '" + rkey.value("expt_id", "") +
                                "' has no trained model yet (POST .../models first and wait for it)");
        }
    }

    Response post_validations(const Request& req) {
        require_module("validate");
        const auto& c = req.param("collab_id");
        const auto& p = req.param("project_id");
        const auto& pt = req.param("participant_id");
        json body = body_of(req);
        json project = project_doc(c, p);
        Cluster cl = cluster_of(c, p);
        if (!pt.empty() && std::find(cl.participants.begin(), cl.participants.end(), pt) == cl.participants.end()) {
            throw fail(404, "Participant '" + pt + "' has not registered for Project '" + p + "'!");
        }
        json superset = superset_of(c, p, cl, body.value("auto_align", true));
        std::vector<jobs::JobSpec> specs;
        for (const auto& [expt, run] : combinations(c, p, req.param("expt_id"), req.param("run_id"))) {
            require_trained(c, p, run);
            auto s = combination_job("validate", c, p, project, expt, run, cl, superset, body);
            s.parameters["participants"] = pt.empty() ? json(cl.participants) : json::array({pt});
            s.parameters["metas"] = json::array({"evaluate"});
            specs.push_back(std::move(s));
        }
        json jobs = submit(std::move(specs));
        return ok(200, "validations.post", req, json::array(), &jobs);
    }

    Response get_predictions(const Request& req) {
        return listing(req, "Prediction",
                       match_of(req, {"participant_id", "collab_id", "project_id", "expt_id", "run_id"}),
                       "predictions.get", "Predictions do not exist for specified keyword filters!");
    }

    Response post_predictions(const Request& req) {
        require_module("predict");
        const auto& pt = req.param("participant_id");
        const auto& c = req.param("collab_id");
        json body = body_of(req);
        require_record("Participant", {{"participant_id", pt}}, "Participant '" + pt + "' does not exist!");
        require_record("Collaboration", {{"collab_id", c}}, "Collaboration '" + c + "' does not exist!");
        if (body.contains("tags") && !body["tags"].is_object()) {
            throw Fail{Response::field_error(422, "field 'tags' must map project ids to lists of tags", "tags")};
        }
        sdk::Key rmatch{{"collab_id", c}, {"participant_id", pt}};
        if (!req.param("project_id").empty()) {
            rmatch.push_back({"project_id", req.param("project_id")});
        }
        auto regs = must(store_.list("Registration", rmatch));
        if (regs.empty()) {
            throw fail(404, "Participant '" + pt + "' has not registered for any matching project in Collaboration '" +
                                c + "'!");
        }
        std::set<std::string> registered;
        for (const auto& reg : regs) {
            registered.insert(rest::RecordStore::key_json(reg.key).value("project_id", ""));
        }
        // New predict tags are checked here and stored only once every job of the request is
        // built: a request refused (404, 409, 422) changes nothing.
        std::vector<rest::RecordPatch> tag_updates;
        std::map<std::string, json> new_predict;
        const json new_tags = body.value("tags", json::object());
        for (auto& [project_id, tags] : new_tags.items()) {
            const std::string field = "tags." + project_id;
            if (!rest::is_tag_list(tags)) {
                throw Fail{Response::field_error(
                    422, "field '" + field + "' must be a list of tags (lists of strings)", field)};
            }
            if (registered.count(project_id) == 0) {
                throw Fail{Response::field_error(
                    422, "field '" + field + "' names a project that participant '" + pt +
                             "' has not registered for in this request's scope",
                    field)};
            }
            auto tag = require_record("Tag", {{"collab_id", c}, {"project_id", project_id}, {"participant_id", pt}},
                                      "Data tags does not exist for participant '" + pt + "' under Project '" +
                                          project_id + "'!");
            tag_updates.push_back({"Tag", tag.key, json{{"predict", tags}}});
            new_predict[project_id] = tags;
        }
        std::vector<jobs::JobSpec> specs;
        for (const auto& reg : regs) {
            const std::string p = rest::RecordStore::key_json(reg.key).value("project_id", "");
            json project = project_doc(c, p);
            Cluster cl = cluster_of(c, p);
            if (auto it = new_predict.find(p); it != new_predict.end() && cl.tags.contains(pt)) {
                cl.tags[pt]["predict"] = it->second;  // as stored below, before the jobs
            }
            json superset = superset_of(c, p, cl, body.value("auto_align", true));
            for (const auto& [expt, run] : combinations(c, p, req.param("expt_id"), req.param("run_id"))) {
                require_trained(c, p, run);
                auto s = combination_job("predict", c, p, project, expt, run, cl, superset, body);
                s.parameters["participants"] = json::array({pt});
                s.parameters["metas"] = json::array({"predict"});
                specs.push_back(std::move(s));
            }
        }
        // The director is the single writer: the tags are stored in their turns with the PUT
        // routes (a PUT meanwhile keeps its fields, and so do these), then the jobs go out.
        if (!tag_updates.empty()) {
            if (auto st = d_.merger->merge(tag_updates, std::chrono::seconds(30)); !st) {
                throw fail(st.error());
            }
        }
        json jobs = submit(std::move(specs));
        return ok(200, "predictions.post", req, json::array(), &jobs);
    }

    // ---- /v1/jobs ------------------------------------------------------------------------

    Response list_jobs(const Request& req) {
        std::map<std::string, std::string> q;
        if (auto bad = parse_filters(req.query, {"state", "process", "collab_id", "project_id"}, q)) {
            throw Fail{std::move(*bad)};
        }
        auto jobs = must(d_.jobs.list({q["state"], q["process"], q["collab_id"], q["project_id"]}));
        json data = json::array();
        for (const auto& j : jobs) {
            data.push_back(j.to_api());
        }
        return ok(200, "jobs.get", req, std::move(data));
    }

    Response get_job(const Request& req) {
        return ok(200, "job.get", req, must(d_.jobs.get(req.param("job_id"))).to_api());
    }

    Response cancel_job(const Request& req) {
        return ok(200, "job.cancel", req, must(d_.jobs.cancel(req.param("job_id"))).to_api());
    }

    DirectorRoutesDeps d_;
    rest::RecordStore store_;
    std::mutex train_submit_mutex_;  ///< post_models: the in-training check and the submit
};

}  // namespace

std::map<std::string, std::string> parse_query(std::string_view query, std::string* repeated) {
    std::map<std::string, std::string> out;
    while (!query.empty()) {
        const auto amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        const auto eq = pair.find('=');
        std::string_view k = pair.substr(0, eq);
        std::string_view v = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
        auto dk = http::percent_decode(k);
        auto dv = http::percent_decode(v);
        std::string key = dk ? *dk : std::string(k);
        if (repeated != nullptr && repeated->empty() && out.count(key) != 0) {
            *repeated = key;
        }
        out[std::move(key)] = dv ? *dv : std::string(v);
    }
    return out;
}

std::optional<http::Response> parse_filters(std::string_view query, const std::vector<std::string>& known,
                                            std::map<std::string, std::string>& out) {
    std::string repeated;
    out = parse_query(query, &repeated);
    for (const auto& [key, value] : out) {
        if (std::find(known.begin(), known.end(), key) == known.end()) {
            std::string names;
            for (const auto& k : known) {
                names += (names.empty() ? "" : ", ") + k;
            }
            return http::Response::field_error(400, "unknown query parameter '" + key + "' (filters: " + names + ")",
                                               key);
        }
        if (value.empty()) {
            return http::Response::field_error(400, "query parameter '" + key + "' is empty", key);
        }
    }
    if (!repeated.empty()) {
        return http::Response::field_error(
            400, "query parameter '" + repeated + "' is given more than once (one value per filter)", repeated);
    }
    static const std::set<std::string> kStates{"submitting", "queued", "running", "succeeded", "failed", "cancelled"};
    if (auto it = out.find("state"); it != out.end() && !kStates.count(it->second)) {
        return http::Response::field_error(
            400, "query 'state' must be one of submitting, queued, running, succeeded, failed, cancelled", "state");
    }
    return std::nullopt;
}

void register_director_routes(http::Router& router, DirectorRoutesDeps deps) {
    if (!deps.merger) {
        throw std::invalid_argument("register_director_routes: deps.merger is required "
                                    "(the one register_connect_routes returns)");
    }
    std::make_shared<Routes>(deps)->add(router);
}

}  // namespace synergos::core::roles
