// SPDX-License-Identifier: Apache-2.0
#include "image_pipeline.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "csv.hpp"
#include "decode.hpp"

namespace synergos::plugins::image {

using data::CsvTable;
using data::example;
using data::number_level_name;
using data::parse_csv;
using data::parse_number;
using data::in_quotes;
using data::is_utf8;

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

Error invalid(std::string message) {
    return {ErrorCode::InvalidArgument, std::move(message)};
}

std::string_view trim(std::string_view v) {
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!v.empty() && is_space(v.front())) {
        v.remove_prefix(1);
    }
    while (!v.empty() && is_space(v.back())) {
        v.remove_suffix(1);
    }
    return v;
}

bool is_missing_token(std::string_view v) {
    return v.empty() || v == "NA" || v == "NaN" || v == "nan" || v == "null" || v == "None" ||
           v == "N/A" || v == "n/a" || v == "NULL" || v == "<NA>";
}

sdk::Result<std::string> read_file(const fs::path& path, std::int64_t max_bytes) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
        return invalid("file " + path.string() + " does not exist or is not a regular file");
    }
    const auto size = fs::file_size(path, ec);
    if (ec) {
        return invalid("file " + path.string() + ": " + ec.message());
    }
    if (static_cast<std::uint64_t>(max_bytes) < size) {
        return Error{ErrorCode::ResourceExhausted,
                     "file " + path.string() + " has " + std::to_string(size) +
                         " bytes, more than the limit of " + std::to_string(max_bytes) +
                         " (option max_file_bytes)"};
    }
    std::ifstream in(path, std::ios::binary);
    std::string text(size, '\0');
    in.read(text.data(), static_cast<std::streamsize>(size));
    if (!in || static_cast<std::uint64_t>(in.gcount()) != size) {
        return invalid("file " + path.string() + " could not be read");
    }
    return text;
}

/// Applies request options over the plugin defaults; unknown keys are refused.
sdk::Result<ImageSettings> settings_from(const std::string& options_json, ImageSettings s) {
    const Json o = Json::parse(options_json.empty() ? "{}" : options_json, nullptr, false);
    if (o.is_discarded() || !o.is_object()) {
        return invalid("image options are not a JSON object");
    }
    for (auto it = o.begin(); it != o.end(); ++it) {
        const std::string& key = it.key();
        const Json& v = it.value();
        if (key == "color") {
            if (!v.is_string() || (v != "L" && v != "RGB")) {
                return invalid("image option 'color' must be \"L\" or \"RGB\"");
            }
            s.color = v.get<std::string>();
        } else if (key == "height" || key == "width") {
            if (!v.is_number_integer() || v.get<std::int64_t>() <= 0 ||
                v.get<std::int64_t>() > 65535) {
                return invalid("image option " + in_quotes(key) + " must be an integer in 1..65535");
            }
            (key == "height" ? s.height : s.width) = v.get<int>();
        } else if (key == "resize") {
            if (!v.is_string() || (v != "nearest" && v != "bilinear" && v != "pad")) {
                return invalid("image option 'resize' must be \"nearest\", \"bilinear\" or \"pad\"");
            }
            s.resize = v == "bilinear" ? Resize::Bilinear : v == "nearest" ? Resize::Nearest : Resize::Pad;
        } else if (key == "pixel_range") {
            if (!v.is_string() || (v != "unit" && v != "byte")) {
                return invalid("image option 'pixel_range' must be \"unit\" ([0,1]) or \"byte\" "
                               "(0-255, as the original Synergos)");
            }
            s.unit_range = v == "unit";
        } else {
            return invalid("unknown image option " + example(key) +
                           " (known: color, height, width, resize, pixel_range)");
        }
    }
    if ((s.height == 0) != (s.width == 0)) {
        return invalid("image options 'height' and 'width' must be given together");
    }
    return s;
}

struct Row {
    std::size_t image = 0;  ///< index into the decoded images
    std::string target;
    std::string where;  ///< "<mapping.csv> row <n>", for errors
    /// The class the target names: a number by its value (`2.0` and `2` -> `2`), other text as
    /// written; duplicates and labels both go by it.
    std::string name;
    double number = std::numeric_limits<double>::quiet_NaN();  ///< the target's value; NaN: text
};

/// One image file: its decoded pixels, or, when the options give the sample size, only its
/// sample (made as soon as it is decoded: a split of full-size photos resized to 28 x 28 held
/// every photo until the end, and was refused at max_split_bytes for pixels it did not keep).
struct Decoded {
    Image image;                ///< pixels empty once `sample` is made
    std::vector<float> sample;  ///< planar floats at the requested size, when it is given
    std::string file;
    std::uint64_t hash = 0;

    /// Same input to the model: same sample, or same pixels.
    bool same_as(const Decoded& o) const {
        return sample.empty() ? image.width == o.image.width && image.pixels == o.image.pixels
                              : sample == o.sample;
    }
};

std::uint64_t fnv1a(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    std::uint64_t h = 1469598103934665603ull;
    for (std::size_t i = 0; i < size; ++i) {
        h = (h ^ bytes[i]) * 1099511628211ull;
    }
    return h;
}

sdk::Result<sdk::Dataset> load_impl(const sdk::DataRequest& request, const ImageSettings& defaults,
                                    const ImageLimits& limits) {
    if (request.action != "classify" && request.action != "regress") {
        return invalid("action " + example(request.action) + " is not 'classify' or 'regress'");
    }
    auto settings = settings_from(request.options_json, defaults);
    if (!settings) {
        return settings.error();
    }
    const ImageSettings& s = *settings;
    const int channels = s.color == "RGB" ? 3 : 1;
    if (request.directories.empty()) {
        return invalid("no dataset folder was given");
    }

    // Sample size: explicit, or that of the first image (then every image must share it).
    int height = s.height;
    int width = s.width;
    const bool explicit_size = height > 0;
    // A requested size is bounded as source images are: 65535 x 65535 grayscale samples were
    // allocated (17 GB per image) and filled.
    if (explicit_size &&
        static_cast<std::int64_t>(height) * width > limits.max_image_pixels) {
        return Error{ErrorCode::ResourceExhausted,
                     "image options 'height' x 'width' (" + std::to_string(height) + " x " +
                         std::to_string(width) + ") are more than max_image_pixels (" +
                         std::to_string(limits.max_image_pixels) + ")"};
    }
    const std::size_t sample_size = explicit_size ? static_cast<std::size_t>(channels) *
                                                        static_cast<std::size_t>(height) *
                                                        static_cast<std::size_t>(width)
                                                  : 0;

    std::vector<Decoded> images;
    std::int64_t decoded_bytes = 0;  // what `images` hold: pixels, or samples once made
    std::unordered_map<std::string, std::size_t> image_index;  // by normalised path
    std::vector<Row> rows;
    std::int64_t rows_read = 0;
    std::int64_t rows_missing_target = 0;
    for (const std::string& dir_text : request.directories) {
        const fs::path dir(dir_text);
        std::error_code ec;
        const fs::path root = fs::canonical(dir, ec);
        if (ec || !fs::is_directory(root, ec)) {
            return invalid("dataset folder " + dir_text + " does not exist");
        }
        const fs::path mapping = dir / "mapping.csv";
        if (auto st = data::require_inside(root, mapping); !st) {
            return st.error();
        }
        auto text = read_file(mapping, limits.max_file_bytes);
        if (!text) {
            return text.error();
        }
        auto table = parse_csv(std::move(*text), mapping.string());
        if (!table) {
            return table.error();
        }
        const auto& header = table->header;
        const auto image_col = std::find(header.begin(), header.end(), "image");
        const auto target_col = std::find(header.begin(), header.end(), "target");
        if (image_col == header.end() || target_col == header.end()) {
            return invalid("file " + mapping.string() + ": column " +
                           (image_col == header.end() ? "'image'" : "'target'") +
                           " is missing (expected columns image,target)");
        }
        const auto ic = static_cast<std::size_t>(image_col - header.begin());
        const auto tc = static_cast<std::size_t>(target_col - header.begin());
        for (std::size_t r = 0; r < table->rows; ++r) {
            ++rows_read;
            const std::string where = mapping.string() + " row " + std::to_string(r + 1);
            const std::string_view name = trim(table->at(r, ic));
            const std::string_view target = trim(table->at(r, tc));
            if (name.empty()) {
                return invalid("file " + where + ": column 'image' is empty");
            }
            if (is_missing_token(target)) {
                ++rows_missing_target;
                continue;
            }
            const fs::path rel(name);
            bool escapes = rel.is_absolute() || name.find('\0') != std::string_view::npos;
            for (const fs::path& part : rel) {
                escapes = escapes || part == "..";
            }
            if (escapes) {
                return invalid("file " + where + ": image " + example(name) +
                               " must be a path inside the dataset folder");
            }
            const fs::path file = (root / rel).lexically_normal();
            auto it = image_index.find(file.string());
            if (it == image_index.end()) {
                if (static_cast<std::int64_t>(images.size()) >= limits.max_images) {
                    return Error{ErrorCode::ResourceExhausted,
                                 "more than " + std::to_string(limits.max_images) +
                                     " images in one split (option max_images), at " + where};
                }
                // A symbolic link may not lead out of the dataset folder.
                const fs::path real = fs::canonical(file, ec);
                if (ec) {
                    // A path too long to exist is the cell itself: shortened like it.
                    return invalid("file " + where + ": image " +
                                   (file.native().size() <= 4096 ? file.string() : example(name)) +
                                   " does not exist");
                }
                if (!data::is_inside(root, real)) {
                    return invalid("file " + where + ": image " + example(name) +
                                   " resolves outside the dataset folder");
                }
                auto bytes = read_file(real, limits.max_file_bytes);
                if (!bytes) {
                    return bytes.error();
                }
                auto img = decode_image(*bytes, channels, limits.max_image_pixels, file.string());
                if (!img) {
                    return img.error();
                }
                Decoded d{std::move(*img), {}, file.string(), 0};
                if (explicit_size && s.resize == Resize::Pad &&
                    (d.image.height > height || d.image.width > width)) {
                    return invalid("image " + file.string() + " is " + std::to_string(d.image.width) + "x" +
                                   std::to_string(d.image.height) + ", larger than the sample size " +
                                   std::to_string(width) + "x" + std::to_string(height) +
                                   " (options width and height) that resize \"pad\" pads to; "
                                   "raise them, or shrink with \"bilinear\" or \"nearest\"");
                }
                if (explicit_size) {
                    d.sample.resize(sample_size);
                    to_planar(d.image, height, width, s.resize, d.sample.data(), s.unit_range);
                    d.image.pixels = {};  // the sample is all that is used from here on
                    d.hash = fnv1a(d.sample.data(), d.sample.size() * sizeof(float));
                    decoded_bytes += static_cast<std::int64_t>(d.sample.size() * sizeof(float));
                } else {
                    d.hash = fnv1a(d.image.pixels.data(), d.image.pixels.size());
                    decoded_bytes += static_cast<std::int64_t>(d.image.pixels.size());
                }
                if (decoded_bytes > limits.max_split_bytes) {
                    return Error{ErrorCode::ResourceExhausted,
                                 std::string(explicit_size ? "the split's samples take more than "
                                                           : "the split's images decode to more than ") +
                                     std::to_string(limits.max_split_bytes) +
                                     " bytes (option max_split_bytes), at image " + file.string()};
                }
                images.push_back(std::move(d));
                it = image_index.emplace(file.string(), images.size() - 1).first;
            }
            if (static_cast<std::int64_t>(rows.size()) >= limits.max_images) {
                return Error{ErrorCode::ResourceExhausted,
                             "more than " + std::to_string(limits.max_images) +
                                 " rows in one split (option max_images), at " + where};
            }
            Row row{it->second, std::string(target), where, {}};
            double v = 0.0;
            if (parse_number(target, v)) {
                row.number = v;
                row.name = number_level_name(target, v);
            } else {
                row.name = row.target;
            }
            rows.push_back(std::move(row));
        }
    }
    if (rows.empty()) {
        std::string folders;
        for (const std::string& d : request.directories) {
            folders += (folders.empty() ? "" : ", ") + d;
        }
        return invalid((request.directories.size() == 1 ? "dataset folder " : "dataset folders ") +
                       folders + (request.directories.size() == 1 ? " lists" : " list") +
                       " no image with a target");
    }

    if (!explicit_size && s.resize == Resize::Pad) {
        // The largest height and width of the split: every image is padded to them.
        for (const Decoded& d : images) {
            height = std::max(height, d.image.height);
            width = std::max(width, d.image.width);
        }
        if (static_cast<std::int64_t>(height) * width > limits.max_image_pixels) {
            return Error{ErrorCode::ResourceExhausted,
                         "the split's largest height and width (" + std::to_string(width) + "x" +
                             std::to_string(height) + ", resize \"pad\") are more than max_image_pixels (" +
                             std::to_string(limits.max_image_pixels) + "); set the options height and width"};
        }
    } else if (!explicit_size) {
        const Decoded& first = images[rows.front().image];
        height = first.image.height;
        width = first.image.width;
        for (const Decoded& d : images) {
            if (d.image.height != height || d.image.width != width) {
                return invalid("image " + d.file + " is " + std::to_string(d.image.width) + "x" +
                               std::to_string(d.image.height) + " but " + first.file + " is " +
                               std::to_string(width) + "x" + std::to_string(height) +
                               ": set the options height and width to resize them, or resize \"pad\"");
            }
        }
    }

    // Identical pixels (even from different files) with the same target are one sample.
    std::vector<std::size_t> canonical(images.size());
    {
        std::unordered_map<std::uint64_t, std::vector<std::size_t>> by_hash;
        for (std::size_t i = 0; i < images.size(); ++i) {
            canonical[i] = i;
            auto& bucket = by_hash[images[i].hash];
            for (std::size_t j : bucket) {
                if (images[j].same_as(images[i])) {
                    canonical[i] = j;
                    break;
                }
            }
            if (canonical[i] == i) {
                bucket.push_back(i);
            }
        }
    }
    std::vector<const Row*> kept;
    {
        // By the target's name, not its spelling: one image listed as `2` and as `2.0` is one
        // sample of class `target_2` (it was kept twice).
        std::set<std::pair<std::size_t, std::string>> seen;
        for (const Row& row : rows) {
            if (seen.emplace(canonical[row.image], row.name).second) {
                kept.push_back(&row);
            }
        }
    }
    const std::int64_t duplicates = static_cast<std::int64_t>(rows.size() - kept.size());

    sdk::Dataset ds;
    const std::size_t n = kept.size();
    const std::size_t sample = static_cast<std::size_t>(channels) *
                               static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
    // Checked before allocating (each factor is bounded: n by max_images, a sample by
    // max_image_pixels, so the product cannot overflow).
    if (static_cast<double>(n) * static_cast<double>(sample) * sizeof(float) >
        static_cast<double>(limits.max_split_bytes)) {
        return Error{ErrorCode::ResourceExhausted,
                     std::to_string(n) + " samples of " + std::to_string(channels) + " x " + std::to_string(height) +
                         " x " + std::to_string(width) + " floats are more than " +
                         std::to_string(limits.max_split_bytes) + " bytes (option max_split_bytes)"};
    }
    ds.rows = static_cast<std::int64_t>(n);
    ds.sample_shape = {channels, height, width};
    ds.features.resize(n * sample);
    std::int64_t resized = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const Decoded& d = images[kept[i]->image];
        if (d.image.height != height || d.image.width != width) {
            ++resized;
        }
        if (!d.sample.empty()) {
            std::copy(d.sample.begin(), d.sample.end(), ds.features.begin() + static_cast<std::ptrdiff_t>(i * sample));
        } else {
            to_planar(d.image, height, width, s.resize, ds.features.data() + i * sample,
                      s.unit_range);
        }
    }

    Json classes = Json::array();
    if (request.action == "classify") {
        // Classes are named by each target alone, so a value has one name in every split: a
        // number by its value (`2.0` -> `2`), any other text as written. (Naming them as
        // numbers only when the whole split was numeric made `2.0` `target_2` in one split and
        // `target_2.0` in another.) Numbers sort first by value, then texts bytewise.
        std::map<std::string, double> order;  // name -> its number, NaN for a text class
        for (std::size_t i = 0; i < n; ++i) {
            if (std::isnan(kept[i]->number) && !is_utf8(kept[i]->target)) {
                return invalid("file " + kept[i]->where + ": target " + example(kept[i]->target) +
                               " is not UTF-8 text; save mapping.csv as UTF-8");
            }
            order.emplace(kept[i]->name, kept[i]->number);
        }
        std::vector<std::pair<std::string, double>> sorted(order.begin(), order.end());
        std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
            if (std::isnan(a.second) != std::isnan(b.second)) {
                return !std::isnan(a.second);
            }
            return !std::isnan(a.second) && a.second < b.second;  // texts keep map (byte) order
        });
        std::map<std::string, std::size_t> index;
        for (const auto& [name, key] : sorted) {
            index.emplace(name, ds.label_names.size());
            ds.label_names.push_back("target_" + name);
        }
        const std::size_t lw = ds.label_names.size();
        // One-hot labels are n x classes floats: 100,000 rows of as many classes (a 1 MB
        // mapping.csv, one tiny image) asked for 40 GB. Counted with the samples.
        if ((static_cast<double>(n) * static_cast<double>(sample) +
             static_cast<double>(n) * static_cast<double>(lw)) *
                sizeof(float) >
            static_cast<double>(limits.max_split_bytes)) {
            return Error{ErrorCode::ResourceExhausted,
                         std::to_string(n) + " samples of " + std::to_string(channels) + " x " +
                             std::to_string(height) + " x " + std::to_string(width) +
                             " floats with one-hot labels of " + std::to_string(lw) +
                             " classes are more than " + std::to_string(limits.max_split_bytes) +
                             " bytes (option max_split_bytes)"};
        }
        std::vector<std::int64_t> counts(lw, 0);
        ds.labels.assign(n * lw, 0.0f);
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t k = index.at(kept[i]->name);
            ds.labels[i * lw + k] = 1.0f;
            ++counts[k];
        }
        for (std::size_t k = 0; k < lw; ++k) {
            classes.push_back({{"class", sorted[k].first}, {"count", counts[k]}});
        }
    } else {
        ds.label_names = {"target"};
        ds.labels.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            const double v = kept[i]->number;
            if (std::isnan(v)) {
                return invalid("file " + kept[i]->where + ": target " + example(kept[i]->target) +
                               " is not a number (regression)");
            }
            // Labels are float32: 1e39 became infinity (and the conversion is undefined).
            if (std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
                return invalid("file " + kept[i]->where + ": target " + example(kept[i]->target) +
                               " is beyond the float32 range of labels (|value| > 3.4e38)");
            }
            ds.labels[i] = static_cast<float>(v);
        }
    }

    Json meta = Json::object();
    meta["_type"] = "image";
    meta["src_count"] = n;
    meta["rows_read"] = rows_read;
    meta["rows_missing_target"] = rows_missing_target;
    meta["duplicates_dropped"] = duplicates;
    meta["image_files"] = images.size();
    meta["resized"] = resized;
    meta["pixel_height"] = height;
    meta["pixel_width"] = width;
    meta["color"] = s.color;
    meta["channels"] = channels;
    meta["resize"] = s.resize == Resize::Bilinear ? "bilinear" : s.resize == Resize::Nearest ? "nearest" : "pad";
    meta["pixel_scale"] = s.unit_range ? "[0,1]" : "[0,255]";
    if (request.action == "classify") {
        meta["classes"] = classes;
    }
    ds.metadata_json = meta.dump(-1, ' ', false, Json::error_handler_t::replace);
    ds.schema_json = Json{{"image", s.color == "RGB" ? "image/RGB" : "image/L"},
                          {"target", request.action == "classify" ? "category" : "float64"}}
                         .dump();
    return ds;
}

}  // namespace

sdk::Result<sdk::Dataset> load_images(const sdk::DataRequest& request,
                                      const ImageSettings& defaults,
                                      const ImageLimits& limits) noexcept {
    try {
        return load_impl(request, defaults, limits);
    } catch (const std::bad_alloc&) {
        return Error{ErrorCode::ResourceExhausted, "image: out of memory while loading data"};
    } catch (const std::exception& e) {
        return Error{ErrorCode::Internal, std::string("image: ") + e.what()};
    } catch (...) {
        return Error{ErrorCode::Internal, "image: unknown failure"};
    }
}

ImagePipeline::ImagePipeline(sdk::HostContext& host, const sdk::Options& options) : host_(host) {
    Json defaults = Json::object();
    defaults["color"] = options.get_string("color", "L");
    defaults["resize"] = options.get_string("resize", "bilinear");
    defaults["pixel_range"] = options.get_string("pixel_range", "unit");
    const std::int64_t height = options.get_int("height", 0);
    const std::int64_t width = options.get_int("width", 0);
    if (height != 0 || width != 0) {
        defaults["height"] = height;
        defaults["width"] = width;
    }
    auto settings = settings_from(defaults.dump(), ImageSettings{});
    if (!settings) {
        throw std::invalid_argument(settings.error().message);
    }
    defaults_ = *settings;
    limits_.max_images = options.get_int("max_images", limits_.max_images);
    limits_.max_image_pixels = options.get_int("max_image_pixels", limits_.max_image_pixels);
    limits_.max_file_bytes = options.get_int("max_file_bytes", limits_.max_file_bytes);
    limits_.max_split_bytes = options.get_int("max_split_bytes", limits_.max_split_bytes);
    if (limits_.max_images <= 0 || limits_.max_image_pixels <= 0 || limits_.max_file_bytes <= 0 ||
        limits_.max_split_bytes <= 0) {
        throw std::invalid_argument(
            "options max_images, max_image_pixels, max_file_bytes and max_split_bytes must be positive");
    }
}

sdk::Result<sdk::Dataset> ImagePipeline::load(const sdk::DataRequest& request) noexcept {
    auto result = load_images(request, defaults_, limits_);
    try {
        if (result) {
            host_.logger().debug(
                "image: split loaded",
                Json{{"rows", result->rows}, {"sample_shape", result->sample_shape}}.dump());
        } else {
            host_.logger().warn("image: load refused",
                                Json{{"error", result.error().message}}.dump(
                                    -1, ' ', false, Json::error_handler_t::replace));
        }
    } catch (...) {
        // Logging is best effort; the result stands.
    }
    return result;
}

namespace {

constexpr sdk::OptionSpec kOptions[] = {
    {"color", sdk::OptionType::String, false, "L",
     "default colour mode: L (grayscale, 1 channel) or RGB (3 channels)", false},
    {"height", sdk::OptionType::Int, false, "0",
     "default sample height; 0 = the first image's (all images must then share one size)", false},
    {"width", sdk::OptionType::Int, false, "0", "default sample width; 0 = the first image's",
     false},
    {"resize", sdk::OptionType::String, false, "bilinear",
     "how an image of another size becomes a sample: bilinear or nearest (stretched), or pad "
     "(zero-padded at the bottom and right, as the original Synergos; without height and width "
     "the sample is the largest image's size)", false},
    {"pixel_range", sdk::OptionType::String, false, "unit",
     "pixel values as unit ([0,1], value / 255) or byte (0-255, as the original Synergos: for "
     "models and learning rates carried over from it)", false},
    {"max_images", sdk::OptionType::Int, false, "100000", "most images (rows) in one split", false},
    {"max_image_pixels", sdk::OptionType::Int, false, "16777216",
     "largest source image (width x height), checked before decoding", false},
    {"max_file_bytes", sdk::OptionType::Int, false, "67108864",
     "largest image or mapping.csv file, in bytes", false},
    {"max_split_bytes", sdk::OptionType::Int, false, "4294967296",
     "most bytes one split's images may decode to, and its samples take as floats", false},
};

}  // namespace

const sdk::PluginDescriptor kImageDescriptor{
    sizeof(sdk::PluginDescriptor),
    "image",
    sdk::PluginKind::Data,
    "0.1.0",
    "PNG/JPEG images listed in mapping.csv: grayscale or RGB, resized, scaled to [0,1]",
    "Synergos",
    sdk::PluginStatus::Stable,
    kOptions,
    sizeof(kOptions) / sizeof(kOptions[0]),
};

}  // namespace synergos::plugins::image
