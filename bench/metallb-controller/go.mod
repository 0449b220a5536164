module github.com/ironlb/ironlb/bench/metallb-controller

go 1.26

require go.universe.tf/metallb v0.15.2
