// The two kinds of failure the Policy's C++ side reports, shaped like Python's ObservationError
// and PackError so that the pybind module can raise those very classes and the C ABI can map
// them to its error codes with the same text.
#pragma once

#include <stdexcept>
#include <string>

namespace vla_edge::policy {

// An input (camera image, state, prompt, noise) does not fit the policy: names the field.
class FieldError : public std::invalid_argument {
  public:
    FieldError(std::string field, std::string expected, std::string got)
        : std::invalid_argument("observation field '" + field + "': expected " + expected + ", got " + got),
          field_(std::move(field)), expected_(std::move(expected)), got_(std::move(got)) {}
    const std::string& field() const { return field_; }
    const std::string& expected() const { return expected_; }
    const std::string& got() const { return got_; }

  private:
    std::string field_, expected_, got_;
};

// A pack file or manifest field is missing, malformed or inconsistent: `where` names it.
class PackFault : public std::runtime_error {
  public:
    PackFault(std::string where, std::string problem)
        : std::runtime_error(where + ": " + problem), where_(std::move(where)), problem_(std::move(problem)) {}
    const std::string& where() const { return where_; }
    const std::string& problem() const { return problem_; }

  private:
    std::string where_, problem_;
};

}  // namespace vla_edge::policy
